"""Data pipeline: documents -> byte-level BPE -> packed (x, y) blocks, sharded and resumable."""

from nextok.data.blocks import BlockSampler, TokenBlockDataset
from nextok.data.cache import ShardedTokens, build_cache, open_split
from nextok.data.packing import block_to_xy, encode_documents, pack_blocks, token_dtype
from nextok.data.sources import load_source, split_train_val, stdlib_dataset, stdlib_files
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenizer import EOT, PAD, load_tokenizer, save_tokenizer, train_bpe

__all__ = [
    "EOT",
    "PAD",
    "BlockSampler",
    "LMDataModule",
    "MixtureDataModule",
    "MixtureDataModule",
    "ResumableDataLoader",
    "ShardedTokens",
    "StreamingBlockDataset",
    "TokenBlockDataset",
    "block_to_xy",
    "build_cache",
    "encode_documents",
    "load_source",
    "load_tokenizer",
    "open_split",
    "pack_blocks",
    "save_tokenizer",
    "split_train_val",
    "stdlib_dataset",
    "stdlib_files",
    "token_dtype",
    "train_bpe",
]


def __getattr__(name: str):
    """The Lightning data module on first use only: ``nextok.data.tokenizer`` (used by the
    checkpoint loader and the HF export) must not pull in Lightning."""
    if name in ("LMDataModule", "ResumableDataLoader"):
        from nextok.data import datamodule

        return getattr(datamodule, name)
    if name == "MixtureDataModule":
        from nextok.data.mixture_datamodule import MixtureDataModule

        return MixtureDataModule
    raise AttributeError(f"module 'nextok.data' has no attribute {name!r}")
