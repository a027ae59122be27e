"""Shared test setup: offline Hugging Face, quiet loggers, deterministic CPU threads."""

from __future__ import annotations

import os

# No network in tests: datasets/tokenizers must work from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
