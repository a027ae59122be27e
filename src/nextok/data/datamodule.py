"""``LMDataModule``: documents -> BPE ids -> packed, shifted (x, y) blocks for Lightning.

Constructor arguments are exactly the keys of ``conf/data/*.yaml``. The jobs live in their own
modules; this class wires them to Lightning's hooks:

- :meth:`prepare_tokenizer` (once per process, before the model is built: the vocabulary decides
  its size; :mod:`nextok.data.tokenization.run_tokenizer`) -> :meth:`prepare_data` (Lightning, one process
  per node: the token cache, :mod:`nextok.data.cache`) -> :meth:`setup` (every rank: tokenize or
  memory-map the splits) -> ``train_dataloader`` / ``val_dataloader``.
- ``state_dict``/``load_state_dict``: the exact data position (:mod:`nextok.data.position`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from nextok.data import cache, loaders, local_files, tokens
from nextok.data.blocks import BlockSampler, TokenBlockDataset
from nextok.data.documents import Documents, load_documents, tokenizer_training_texts
from nextok.data.model_check import check_model_fits
from nextok.data.position import position_state, read_position, trainer_position
from nextok.data.sources import SOURCES, check_source_keys
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenization import run_tokenizer
from nextok.data.tokenization.tokenizer import TOKENIZER_FILE, SpecialTokens
from nextok.distributed.ranks import data_parallel_rank_size, world_size
from nextok.plain import to_plain


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
        for key, value, allowed in (
            ("document_unit", document_unit, local_files.DOCUMENT_UNITS),
            ("encoding_errors", encoding_errors, local_files.ENCODING_ERRORS),
        ):
            if value not in allowed:
                raise ValueError(f"data.{key} must be one of {allowed}, got {value!r}")
        if source not in SOURCES:
            raise ValueError(f"unknown data.source {source!r}; expected one of {SOURCES}")
        check_source_keys(source, path=path, name=name, data_files=data_files)
        if block_size < 1 or batch_size < 1:
            raise ValueError(
                f"data.block_size and data.batch_size must be >= 1 (got {block_size}, {batch_size})"
            )
        self.source, self.path, self.name = source, path, name
        self.data_files = to_plain(data_files)
        self.split, self.val_split, self.val_fraction = split, val_split, val_fraction
        self.text_column, self.document_unit = text_column, document_unit
        self.encoding_errors, self.streaming = encoding_errors, streaming
        self.tokenizer_path, self.eos_token, self.add_bos = tokenizer_path, eos_token, add_bos
        self.target_vocab_size = vocab_size
        self.tokenizer_train_bytes, self.add_pad_token = tokenizer_train_bytes, add_pad_token
        self.block_size, self.batch_size = block_size, batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers, self.shuffle, self.seed = num_workers, shuffle, seed
        self.drop_last, self.max_val_batches = drop_last, max_val_batches
        self.encode_batch_docs, self.shuffle_buffer = encode_batch_docs, shuffle_buffer
        self.cache_dir, self.cache_shard_tokens = cache_dir, cache_shard_tokens
        self.run_dir = run_dir
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory

        self.tokenizer: Tokenizer | None = None
        self.special: SpecialTokens | None = None
        self.train_tokens: np.ndarray | cache.ShardedTokens | None = None
        self.val_tokens: np.ndarray | cache.ShardedTokens | None = None
        self._docs: tuple[Documents, Documents] | None = None
        self._resume: tuple[int, int] | None = None  # (epoch, batches consumed in that epoch)

    # ------------------------------------------------------------------ documents
    def documents(self) -> tuple[Documents, Documents]:
        """``(train, val)`` documents (loaded once); val is a real split or held-out documents."""
        if self._docs is None:
            self._docs = load_documents(
                self.source,
                split=self.split,
                val_split=self.val_split,
                val_fraction=self.val_fraction,
                seed=self.seed,
                text_column=self.text_column,
                path=self.path,
                name=self.name,
                data_files=self.data_files,
                streaming=self.streaming,
                document_unit=self.document_unit,
                encoding_errors=self.encoding_errors,
            )
        return self._docs

    def tokenizer_training_texts(self) -> Iterator[str]:
        """What a new BPE is trained on (mixtures: every source by weight)."""
        return tokenizer_training_texts(self.documents()[0], self.text_column, self.seed)

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
    def prepare_data(self) -> None:
        """Lightning's once-per-node hook: the tokenizer (if not yet there) and the token cache."""
        self.prepare_tokenizer()
        if self.cache_dir:
            self.ensure_cache()

    def cache_key(self) -> str:
        """The token cache folder for this config and tokenizer (:mod:`nextok.data.cache_key`)."""
        return tokens.cache_key_of(self)

    def ensure_cache(self) -> Path:
        """Tokenize both splits into ``cache_dir`` unless that cache exists; its folder."""
        return tokens.ensure_cache(self)

    def setup(self, stage: str | None = None) -> None:
        self._ready_tokenizer()
        self.load_splits(stage)

    def load_splits(self, stage: str | None) -> None:
        """Tokenize (or memory-map from the cache) the splits ``stage`` needs; a stream only
        loads its documents here (to fail early) and is tokenized in the loader's workers."""
        if self.is_streaming:
            self.documents()
            return
        if stage in (None, "fit") and self.train_tokens is None:
            self.train_tokens = tokens.split_tokens(self, "train")
        if stage in (None, "fit", "validate") and self.val_tokens is None:
            self.val_tokens = tokens.split_tokens(self, "val")

    @property
    def is_streaming(self) -> bool:
        """Blocks are packed on the fly from an iterable dataset (streaming without a cache)."""
        return self.streaming and not self.cache_dir

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

    def train_sampler(
        self, rank: int | None = None, world_size: int | None = None, even: bool | None = None
    ) -> BlockSampler:
        """This rank's block order. ``even`` (default: when world_size > 1) trims to equal shards."""
        rank, world_size = self._ranks(rank, world_size)
        return loaders.train_sampler(self, len(self.train_dataset()), rank, world_size, even)

    def streaming_dataset(
        self, which: str = "train", rank: int | None = None, world_size: int | None = None
    ) -> StreamingBlockDataset:
        """The on-the-fly (iterable) block stream for ``streaming: true`` without a cache."""
        return loaders.block_stream(self, which, *self._ranks(rank, world_size))

    def train_dataloader(
        self, rank: int | None = None, world_size: int | None = None, even: bool | None = None
    ) -> DataLoader:
        """Training batches for one rank (from the trainer / torch.distributed unless given)."""
        return loaders.train_loader(self, *self._ranks(rank, world_size), even)

    def val_dataloader(self) -> DataLoader:
        return loaders.val_loader(self, *data_parallel_rank_size(self.trainer))

    # ------------------------------------------------------------------ exact resume
    def state_dict(self) -> dict[str, Any]:
        """Data position saved in Lightning checkpoints: epoch and batches consumed in it."""
        if self.trainer is None:
            epoch, batches = self._resume or (0, 0)
        else:
            epoch, batches = trainer_position(self.trainer, self.is_streaming)
        return position_state(epoch, batches, self.seed, self.batch_size)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = read_position(state_dict, self.batch_size)

    @property
    def resume_position(self) -> tuple[int, int] | None:
        """``(epoch, batches)`` to resume from, once a checkpoint's state was loaded."""
        return self._resume
