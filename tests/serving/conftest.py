"""Serving tests use the generation tests' tiny tokenizer and tiny seeded, context-sensitive
models."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

from helpers.generation import context_model, train_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return train_tokenizer()


@pytest.fixture
def make_model():
    """``make_model(**config_overrides)``: a seeded tiny model in eval mode whose outputs depend on
    the whole context, so that the engine's equality tests see a wrong cache, mask or position."""
    return context_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
