"""``LMDataModule``: documents -> BPE ids -> packed, shifted (x, y) blocks for Lightning.

Constructor arguments are exactly the keys of ``conf/data/*.yaml``, handed on to collaborators
that each take only what they need: a document source (:mod:`nextok.data.sources`), the run's
tokenizer (:class:`RunTokenizer`: ready before the model is built, with its
:class:`TokenEncoder`), :class:`TokenSplits` (ids in memory or cached on disk) or a
:class:`StreamingBlockDataset`, and a :class:`LoaderFactory`, whose training loader carries the
data position checkpoints save (:mod:`nextok.data.position`). Lightning's hooks:
:meth:`prepare_data` (tokenizer, token cache) -> :meth:`setup` (every rank: the splits) ->
the loaders; :meth:`on_before_batch_transfer` counts the training batches consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from nextok.data import cache
from nextok.data.blocks import BlockSampler, TokenBlockDataset
from nextok.data.loaders import LoaderFactory
from nextok.data.model_check import check_model_fits
from nextok.data.position import ResumableDataLoader, count_training_batch
from nextok.data.sources import DocumentSource, make_source
from nextok.data.sources.split import Documents
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenization import run_tokenizer
from nextok.data.tokenization.encoder import TokenEncoder
from nextok.data.tokenization.tokenizer import SpecialTokens
from nextok.data.tokens import TokenSplits
from nextok.distributed.ranks import data_parallel_rank_size, world_size

Tokens = np.ndarray | cache.ShardedTokens


class LMDataModule(L.LightningDataModule):
    """Language-model data: any HF dataset (hub / local files) or the embedded stdlib corpus."""

    sampler_class: type[BlockSampler] = BlockSampler  # the training block order (mixtures: own)

    def __init__(
        self,
        source: str = "stdlib",
        path: str | None = None,
        name: str | None = None,
        data_files: str | list | dict | None = None,
        split: str = "train",
        val_split: str | None = None,
        val_fraction: float = 0.01,
        text_column: str = "text",
        document_unit: str = "file",
        encoding_errors: str = "strict",
        streaming: bool = False,
        tokenizer_path: str | None = None,
        eos_token: str | None = None,
        add_bos: bool | None = None,
        vocab_size: int = 4096,
        tokenizer_train_bytes: int | None = 4_000_000,
        add_pad_token: bool = False,
        block_size: int = 256,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 1337,
        drop_last: bool = True,
        max_val_batches: int | None = None,
        encode_batch_docs: int = 256,
        shuffle_buffer: int = 10_000,
        cache_dir: str | None = None,
        cache_shard_tokens: int = 100_000_000,
        run_dir: str | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        self.corpus: DocumentSource = make_source(
            source,
            path=path,
            name=name,
            data_files=data_files,
            split=split,
            val_split=val_split,
            val_fraction=val_fraction,
            seed=seed,
            text_column=text_column,
            document_unit=document_unit,
            encoding_errors=encoding_errors,
            streaming=streaming,
        )
        if block_size < 1 or batch_size < 1:
            raise ValueError(
                f"data.block_size and data.batch_size must be >= 1 (got {block_size}, {batch_size})"
            )
        self.loaders = LoaderFactory(
            batch_size=batch_size,
            val_batch_size=val_batch_size or batch_size,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            max_val_batches=max_val_batches,
            sampler_class=self.sampler_class,
            shuffle_buffer=shuffle_buffer,
        )
        self.run_tokenizer = run_tokenizer.RunTokenizer(
            tokenizer_path, run_dir, eos_token, add_bos, vocab_size, tokenizer_train_bytes,
            add_pad_token, encode_batch_docs, lambda: self.tokenizer_training_texts(),
        )  # fmt: skip
        self.tokenizer_train_bytes, self.run_dir = tokenizer_train_bytes, run_dir
        self.block_size, self.seed = block_size, seed
        self.cache_dir, self.cache_shard_tokens = cache_dir, cache_shard_tokens

        self.train_tokens: Tokens | None = None
        self.val_tokens: Tokens | None = None

    @property
    def max_val_batches(self) -> int | None:
        """Validation batches per rank (None: the whole split; the final validation sets it)."""
        return self.loaders.max_val_batches

    @max_val_batches.setter
    def max_val_batches(self, value: int | None) -> None:
        self.loaders.max_val_batches = value

    # ------------------------------------------------------------------ documents
    def documents(self) -> tuple[Documents, Documents]:
        """``(train, val)`` documents (loaded once); val is a real split or held-out documents."""
        return self.corpus.documents()

    def tokenizer_training_texts(self) -> Iterator[str]:
        """What a new BPE is trained on (mixtures: every source by weight)."""
        return self.corpus.training_texts()

    # ------------------------------------------------------------------ tokenizer
    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.run_tokenizer.tokenizer

    def prepare_tokenizer(
        self,
        writer: bool = True,
        save_dir: str | Path | None = None,
        timeout_s: float = run_tokenizer.WAIT_TIMEOUT_S,
    ) -> None:
        """Get the run's tokenizer, once (:meth:`RunTokenizer.prepare`)."""
        self.run_tokenizer.prepare(writer, save_dir, timeout_s)

    @property
    def special_tokens(self) -> SpecialTokens:
        """EOS (document separator), BOS and pad, resolved once."""
        return self.run_tokenizer.special

    @property
    def vocab_size(self) -> int:
        return self.run_tokenizer.require().get_vocab_size()

    @property
    def eot_id(self) -> int:
        """The document separator: the tokenizer's EOS (``data.eos_token`` overrides it)."""
        return self.encoder.eos_id

    @property
    def encoder(self) -> TokenEncoder:
        """The tokenizer with the run's EOS and BOS: how every document becomes ids."""
        return self.run_tokenizer.encoder

    def validate_model(self, vocab_size: int, block_size: int) -> None:
        """Raise a clear error when the model cannot take this data."""
        check_model_fits(self.vocab_size, self.block_size, vocab_size, block_size)

    # ------------------------------------------------------------------ tokens
    def token_splits(self, corpus: DocumentSource | None = None) -> TokenSplits:
        """The token ids of ``corpus`` (default: this module's) under the run's encoder."""
        corpus = corpus or self.corpus
        return TokenSplits(
            corpus, self.encoder, self.block_size, self.cache_dir, self.cache_shard_tokens
        )

    def prepare_data(self) -> None:
        """Lightning's once-per-node hook: the tokenizer (if not yet there) and the token cache."""
        self.prepare_tokenizer()
        if self.cache_dir:
            self.ensure_cache()

    def cache_key(self) -> str:
        """The token cache folder for this config and tokenizer (:mod:`nextok.data.cache_key`)."""
        return self.token_splits().key()

    def ensure_cache(self) -> Path:
        """Tokenize both splits into ``cache_dir`` unless that cache exists; its folder."""
        return self.token_splits().ensure_cache()

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit":
            self._refuse_a_second_batch_counter()
        self.run_tokenizer.ready(single_process=world_size(self.trainer) == 1)
        self.load_splits(stage)

    def load_splits(self, stage: str | None) -> None:
        """Tokenize (or memory-map from the cache) the splits ``stage`` needs; a stream only
        loads its documents here (to fail early) and is tokenized in the loader's workers."""
        if self.is_streaming:
            self.documents()
            return
        splits = self.token_splits()
        if stage in (None, "fit") and self.train_tokens is None:
            self.train_tokens = splits.load("train")
        if stage in (None, "fit", "validate") and self.val_tokens is None:
            self.val_tokens = splits.load("val")

    @property
    def is_streaming(self) -> bool:
        """Blocks are packed on the fly from an iterable dataset (streaming without a cache)."""
        return self.corpus.streaming and not self.cache_dir

    # ------------------------------------------------------------------ datasets / loaders
    def train_dataset(self) -> TokenBlockDataset:
        if self.train_tokens is None:
            self.setup("fit")
        return TokenBlockDataset(self.train_tokens, self.block_size)

    def val_dataset(self) -> TokenBlockDataset:
        if self.val_tokens is None:
            self.setup("validate")
        return TokenBlockDataset(self.val_tokens, self.block_size)

    def _ranks(self, rank: int | None, world_size: int | None) -> tuple[int, int]:
        if rank is None or world_size is None:
            return data_parallel_rank_size(self.trainer)
        return rank, world_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_sampler(
        self, rank: int | None = None, world_size: int | None = None, even: bool | None = None
    ) -> BlockSampler:
        """This rank's block order. ``even`` (default: when world_size > 1) trims to equal shards."""
        rank, world_size = self._ranks(rank, world_size)
        n = len(self.train_dataset())
        return self.loaders.train_sampler(n, rank, world_size, even, self._epoch())

    def block_stream(
        self, corpus: DocumentSource, which: str, rank: int, world_size: int
    ) -> StreamingBlockDataset:
        """The on-the-fly block stream of one split of ``corpus`` for one rank."""
        train = which == "train"
        docs = corpus.documents()[0 if train else 1]
        return self.loaders.block_stream(
            docs, corpus.text_column, self.encoder, self.block_size, train, rank, world_size
        )

    def streaming_dataset(
        self, which: str = "train", rank: int | None = None, world_size: int | None = None
    ) -> StreamingBlockDataset:
        """The on-the-fly (iterable) block stream for ``streaming: true`` without a cache."""
        return self.block_stream(self.corpus, which, *self._ranks(rank, world_size))

    def train_dataloader(
        self, rank: int | None = None, world_size: int | None = None, even: bool | None = None
    ) -> ResumableDataLoader:
        """Training batches for one rank (from the trainer / torch.distributed unless given)."""
        rank, world_size = self._ranks(rank, world_size)
        if self.is_streaming:
            return self.loaders.stream_train_loader(
                self.streaming_dataset("train", rank, world_size)
            )
        ds = self.train_dataset()
        return self.loaders.train_loader(ds, rank, world_size, even, self._epoch())

    def val_dataloader(self) -> DataLoader:
        rank, world_size = data_parallel_rank_size(self.trainer)
        if self.is_streaming:
            return self.loaders.stream_val_loader(self.streaming_dataset("val", rank, world_size))
        return self.loaders.val_loader(self.val_dataset(), rank, world_size)

    # ------------------------------------------------------------------ data position
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning hands every batch here just before the model gets it (the data position)."""
        count_training_batch(self.trainer)
        return batch

    def _refuse_a_second_batch_counter(self) -> None:
        """Lightning calls a LightningModule's ``on_before_batch_transfer`` instead of the data
        module's: the data position would then stop counting, and a resume would repeat data."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is not None and is_overridden("on_before_batch_transfer", module):
            raise ValueError(
                f"{type(module).__name__} overrides on_before_batch_transfer, which replaces "
                "LMDataModule's (it counts the batches a checkpoint resumes after); move the "
                "batch change into training_step"
            )
