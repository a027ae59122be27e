"""Serving tests reuse the generation fixtures (tiny tokenizer, tiny seeded models)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "generation_fixtures", Path(__file__).resolve().parents[1] / "generation" / "conftest.py"
)
_gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gen)
# test modules import it by this name (a bare ``conftest`` is whichever folder's came first)
sys.modules["generation_fixtures"] = _gen
tiny_model, train_tokenizer = _gen.tiny_model, _gen.train_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture
def make_model():
    """``make_model(**config_overrides)``: a seeded tiny model in eval mode."""
    return tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
