"""A tiny byte-level BPE and a tiny random Transformer for the evaluation tests."""

from __future__ import annotations

import torch

from nextok.data.sources import stdlib_dataset
from nextok.data.tokenization.tokenizer import train_bpe
from nextok.model import ModelConfig, Transformer


def tiny_tokenizer(vocab: int = 400):
    ds = stdlib_dataset()
    return train_bpe(iter(ds.select(range(0, len(ds), 25))["text"]), vocab, max_bytes=300_000)


def tiny_model(vocab: int = 448, block: int = 64, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, d_model=32)
    return Transformer(cfg).eval()
