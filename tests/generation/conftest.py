"""Fixtures for generation tests: a tiny byte-level BPE tokenizer and tiny models."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from nextok.model import ModelConfig, Transformer

TEXT = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    print(i)\n",
    "héllo wörld ünïcode — ✓\n",
] * 20


def train_tokenizer(vocab_size: int = 300) -> Tokenizer:
    """A real ByteLevel BPE with <|endoftext|> (as the data pipeline builds), trained in ~10 ms."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXT, trainer)
    return tok


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return train_tokenizer()


def tiny_model(vocab_size: int = 97, seed: int = 0, **kw) -> Transformer:
    base = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
    base.update(kw)
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**base)).eval()


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
