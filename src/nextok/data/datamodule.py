"""``LMDataModule``: documents -> BPE ids -> packed, shifted (x, y) blocks for Lightning.

Constructor arguments are exactly the keys of ``conf/data/*.yaml``. They are handed on to the
collaborators that do the work, each with only what it needs:

- a document source (:mod:`nextok.data.sources`: the stdlib corpus, a hub dataset, local files);
- the run's tokenizer (:mod:`nextok.data.tokenization`), ready before the model is built (the
  vocabulary decides its size), and its :class:`TokenEncoder`;
- :class:`TokenSplits` (the splits' ids, in memory or cached on disk) or a
  :class:`StreamingBlockDataset` (blocks packed on the fly);
- a :class:`LoaderFactory` (samplers and loaders), whose training loader carries the data
  position that checkpoints save and resume (:mod:`nextok.data.position`).

Lightning's hooks: :meth:`prepare_data` (one process per node: tokenizer and token cache) ->
:meth:`setup` (every rank: tokenize or memory-map the splits) -> ``train_dataloader`` /
``val_dataloader``; :meth:`on_before_batch_transfer` counts the training batches consumed.
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
from nextok.data.position import ResumableDataLoader
from nextok.data.sources import DocumentSource, make_source
from nextok.data.sources.split import Documents
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenization import run_tokenizer
from nextok.data.tokenization.encoder import TokenEncoder
from nextok.data.tokenization.tokenizer import TOKENIZER_FILE, SpecialTokens
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
        )
        self.tokenizer_path, self.eos_token, self.add_bos = tokenizer_path, eos_token, add_bos
        self.target_vocab_size = vocab_size
        self.tokenizer_train_bytes, self.add_pad_token = tokenizer_train_bytes, add_pad_token
        self.run_dir = run_dir
        self.block_size, self.seed = block_size, seed
        self.encode_batch_docs, self.shuffle_buffer = encode_batch_docs, shuffle_buffer
        self.cache_dir, self.cache_shard_tokens = cache_dir, cache_shard_tokens

        self.tokenizer: Tokenizer | None = None
        self.special: SpecialTokens | None = None
        self._encoder: TokenEncoder | None = None
        self.train_tokens: Tokens | None = None
        self.val_tokens: Tokens | None = None

    # ------------------------------------------------------------------ settings read by the run
    @property
    def text_column(self) -> str:
        return self.corpus.text_column

    @property
    def batch_size(self) -> int:
        return self.loaders.batch_size

    @property
    def val_batch_size(self) -> int:
        return self.loaders.val_batch_size

    @property
    def num_workers(self) -> int:
        return self.loaders.num_workers

    @property
    def pin_memory(self) -> bool:
        return self.loaders.pin_memory

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
    def tokenizer_file(self) -> Path | None:
        return Path(self.run_dir) / TOKENIZER_FILE if self.run_dir else None

    def prepare_tokenizer(
        self,
        writer: bool = True,
        save_dir: str | Path | None = None,
        timeout_s: float = run_tokenizer.WAIT_TIMEOUT_S,
    ) -> None:
        """Get the run's tokenizer, once (a no-op when it is there).

        ``writer`` (one process: global rank 0) loads ``tokenizer_path``, reuses the run dir's
        ``tokenizer.json`` or trains a BPE, then writes the tokenizer folder into ``save_dir``
        (default ``run_dir``). Other processes wait for the run dir's ``tokenizer.json`` (unless
        ``tokenizer_path`` names it) and load it. See :mod:`nextok.data.tokenization.run_tokenizer`."""
        if self.tokenizer is not None:
            return
        if not writer and not self.tokenizer_path and self.tokenizer_file is not None:
            run_tokenizer.wait_for_file(self.tokenizer_file, timeout_s)
        self.tokenizer = run_tokenizer.obtain_tokenizer(
            self.tokenizer_path,
            self.tokenizer_file,
            self.tokenizer_training_texts,
            self.target_vocab_size,
            self.tokenizer_train_bytes,
            self.add_pad_token,
        )
        save_dir = save_dir or self.run_dir
        if writer and save_dir:
            run_tokenizer.write_tokenizer_folder(save_dir, self.tokenizer, self.special_tokens)

    @property
    def special_tokens(self) -> SpecialTokens:
        """EOS (document separator), BOS and pad, resolved once (:func:`resolve_special`)."""
        if self.special is None:
            self.special = run_tokenizer.resolve_special(
                self.require_tokenizer(),
                self.tokenizer_path or self.run_dir,
                self.eos_token,
                self.add_bos,
            )
        return self.special

    @property
    def vocab_size(self) -> int:
        return self.require_tokenizer().get_vocab_size()

    @property
    def eot_id(self) -> int:
        """The document separator: the tokenizer's EOS (``data.eos_token`` overrides it)."""
        return self.special_tokens.eos_id(self.require_tokenizer())

    @property
    def bos_id(self) -> int | None:
        """Prepended to every document when the tokenizer config asks (``data.add_bos``)."""
        return self.special_tokens.bos_id(self.require_tokenizer())

    @property
    def encoder(self) -> TokenEncoder:
        """The tokenizer with the run's EOS and BOS: how every document becomes ids."""
        if self._encoder is None:
            self._encoder = TokenEncoder(
                self.require_tokenizer(), self.eot_id, self.bos_id, self.encode_batch_docs
            )
        return self._encoder

    def require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise RuntimeError("LMDataModule: call prepare_tokenizer() or setup() first")
        return self.tokenizer

    def _ready_tokenizer(self) -> None:
        """The tokenizer for ``setup`` (loaded, or single-process built), checked."""
        if self.tokenizer is None:
            f = self.tokenizer_file
            missing = not self.tokenizer_path and (f is None or not f.exists())
            single = world_size(self.trainer) == 1
            if missing and not single:
                raise ValueError(
                    "data.run_dir is required for multi-process runs: rank 0 saves the trained "
                    "tokenizer there and the other ranks load it"
                )
            self.prepare_tokenizer(writer=single)
        if not self.tokenizer_path:
            run_tokenizer.check_vocab_size(
                self.require_tokenizer(), self.target_vocab_size, self.tokenizer_file
            )
        _ = self.special_tokens  # fail early if the tokenizer cannot separate documents

    def validate_model(self, vocab_size: int, block_size: int) -> None:
        """Raise a clear error when the model cannot take this data."""
        check_model_fits(self.vocab_size, self.block_size, vocab_size, block_size)

    # ------------------------------------------------------------------ tokens
    def token_splits(self, corpus: DocumentSource | None = None) -> TokenSplits:
        """The token ids of ``corpus`` (default: this module's) under the run's encoder."""
        return TokenSplits(
            corpus or self.corpus,
            self.encoder,
            self.block_size,
            self.cache_dir,
            self.cache_shard_tokens,
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
        self._ready_tokenizer()
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
        train, val = corpus.documents()
        is_train = which == "train"
        enc = self.encoder
        return StreamingBlockDataset(
            train if is_train else val,
            enc.tokenizer,
            self.block_size,
            text_column=corpus.text_column,
            rank=rank,
            world_size=world_size,
            batch_size=self.batch_size if is_train else self.val_batch_size,
            shuffle_buffer=self.shuffle_buffer if (is_train and self.loaders.shuffle) else 0,
            seed=self.seed,
            infinite=is_train,
            encode_batch_docs=enc.batch_docs,
            eos_id=enc.eos_id,
            bos_id=enc.bos_id,
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
        """Lightning hands every batch to this hook just before the model gets it: a training
        batch counts as consumed in the training loader's position."""
        trainer = self.trainer
        if trainer is not None and trainer.training:
            loader = trainer.train_dataloader
            if isinstance(loader, ResumableDataLoader):
                loader.consumed()
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
