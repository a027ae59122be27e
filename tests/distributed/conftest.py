"""Fixtures for the multi-process tests (helpers live in helpers/distributed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.distributed import write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")
