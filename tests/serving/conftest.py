"""Serving tests use the generation tests' tiny tokenizer and tiny seeded models."""

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
    """``make_model(**config_overrides)``: a seeded tiny model in eval mode."""
    return tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
