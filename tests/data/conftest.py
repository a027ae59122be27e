"""Fixtures for the data tests; the corpus builders live in helpers/corpora.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.corpora import make_docs, write_jsonl


@pytest.fixture(scope="session")
def docs() -> list[str]:
    return make_docs(120, seed=1)


@pytest.fixture(scope="session")
def jsonl_corpus(tmp_path_factory, docs) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", docs)
