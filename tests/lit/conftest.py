"""Fixtures for the LMModule tests."""

from __future__ import annotations

import pytest

from nextok.model import ModelConfig


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=32)
