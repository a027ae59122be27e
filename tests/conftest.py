"""Shared test setup: offline Hugging Face, quiet loggers, deterministic CPU threads."""

from __future__ import annotations

import os

# No network in tests: datasets/tokenizers must work from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread per process (set before torch is imported; the CLIs the tests start inherit
# it): the suite runs as 2 xdist workers on 2 cores, and two threads per process there spin
# against each other's (a 30-step nextok-train run: 54 s of CPU with 2 threads, 12 s with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")
