"""Data pipeline: documents -> byte-level BPE -> packed (x, y) blocks, sharded and resumable.

``sources/`` (one class per kind of corpus: the stdlib corpus, hub datasets, local files;
train/validation documents), ``tokenization/`` (the BPE and its special tokens, a run's
tokenizer shared by its ranks, the :class:`TokenEncoder`), ``packing`` / ``blocks`` /
``streaming`` (ids -> blocks), ``tokens`` / ``cache`` / ``cache_key`` / ``cache_check`` (a
split's ids, cached on disk), ``loaders`` (samplers and loaders), ``position`` (the training
loader's resume position), ``model_check``, ``prompts``, ``datamodule`` (the Lightning data
module) and ``mixture/`` (weighted mixing of sources).
"""

from nextok.data.blocks import BlockSampler, TokenBlockDataset
from nextok.data.cache import ShardedTokens, build_cache, open_split
from nextok.data.packing import encode_documents, pack_blocks, token_dtype
from nextok.data.position import ResumableDataLoader
from nextok.data.sources import load_source, split_train_val, stdlib_dataset, stdlib_files
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenization.tokenizer import EOT, PAD, load_tokenizer, save_tokenizer, train_bpe

__all__ = [
    "EOT",
    "PAD",
    "BlockSampler",
    "LMDataModule",
    "MixtureDataModule",
    "ResumableDataLoader",
    "ShardedTokens",
    "StreamingBlockDataset",
    "TokenBlockDataset",
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
    """The Lightning data modules on first use only: ``nextok.data.tokenization.tokenizer`` (used by the
    checkpoint loader and the HF export) must not pull in Lightning."""
    if name == "LMDataModule":
        from nextok.data.datamodule import LMDataModule

        return LMDataModule
    if name == "MixtureDataModule":
        from nextok.data.mixture.datamodule import MixtureDataModule

        return MixtureDataModule
    raise AttributeError(f"module 'nextok.data' has no attribute {name!r}")
