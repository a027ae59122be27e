"""A tiny byte-level BPE and tiny seeded models for the generation and serving tests."""

from __future__ import annotations

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


def tiny_model(vocab_size: int = 97, seed: int = 0, **kw) -> Transformer:
    """A seeded 2-layer model in eval mode; ``kw`` overrides its config."""
    base = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
    base.update(kw)
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**base)).eval()


def context_model(vocab_size: int = 97, seed: int = 0, **kw) -> Transformer:
    """A tiny model whose next token depends on the whole context: O(1) random weights. With the
    default 0.02 init a random model's output hinges on the last token alone, so a wrong cache,
    mask or position would go unnoticed by an equality test."""
    model = tiny_model(vocab_size, seed, **kw)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if "norm" in name else 0.0) + 0.4 * torch.randn_like(p))
    return model
