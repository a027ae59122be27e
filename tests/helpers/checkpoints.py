"""A small nextok checkpoint file written directly (no training run), as ``nextok-train`` writes it."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from nextok.checkpoint.verify import add_checksums
from nextok.model import ModelConfig, Transformer

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n",
    "class Point:\n    def __init__(self, x):\n        self.x = x\n",
] * 30


def _tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def write_checkpoint(path: Path, block_size: int = 64) -> tuple[Transformer, Tokenizer]:
    """A checkpoint following the contract in nextok.checkpoint (as nextok-train writes it)."""
    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.get_vocab_size(), block_size=block_size, n_layer=2, n_head=2, d_model=32
    )
    model = Transformer(cfg).eval()
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "nextok": {
            "model_config": cfg.to_dict(),
            "tokenizer_json": tok.to_str(),
            "tokens_seen": 0,
        },
    }
    torch.save(add_checksums(checkpoint), path)
    return model, tok
