"""Fixtures for generation tests: a tiny byte-level BPE tokenizer and tiny models."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

from helpers.generation import tiny_model, train_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return train_tokenizer()


@pytest.fixture
def make_model():
    """Factory fixture: ``make_model(**config_overrides)`` gives a seeded tiny model in eval mode."""
    return tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, especially on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
