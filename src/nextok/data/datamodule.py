"""``LMDataModule``: documents -> BPE ids -> packed, shifted (x, y) blocks for Lightning.

Constructor arguments are exactly the keys of ``conf/data/*.yaml``.

Lifecycle (Lightning calls these): ``prepare_data`` (one process per node: train + save the
tokenizer into ``run_dir``, fill the token cache) -> ``setup`` (every rank: load the tokenizer,
tokenize or memory-map the splits) -> ``train_dataloader`` / ``val_dataloader``.
``state_dict``/``load_state_dict`` carry the exact data position inside checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import lightning as L
import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from nextok.data import cache, local_files
from nextok.data import sources as src
from nextok.data.blocks import BlockSampler, TokenBlockDataset
from nextok.data.packing import encode_stream, token_dtype
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenizer import (
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    SpecialTokens,
    hf_tokenizer_config,
    load_tokenizer,
    load_tokenizer_config,
    save_tokenizer,
    special_tokens,
    train_bpe,
)

log = logging.getLogger(__name__)

STATE_VERSION = 1


def dist_info(trainer: Any = None) -> tuple[int, int]:
    """(rank, world_size): from the trainer if attached, else torch.distributed, else (0, 1)."""
    if trainer is not None:
        # Data-parallel rank/size: under tensor parallelism (FSDP2Strategy) the ranks of one
        # tensor-parallel group must read the same batch, so only the data_parallel mesh counts.
        try:
            kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None)
        except RuntimeError:  # device mesh not built yet
            kwargs = None
        if kwargs and "rank" in kwargs and "num_replicas" in kwargs:
            return int(kwargs["rank"]), int(kwargs["num_replicas"])
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class LMDataModule(L.LightningDataModule):
    """Language-model data: any HF dataset (hub / local files) or the embedded stdlib corpus."""

    sampler_class: type[BlockSampler] = (
        BlockSampler  # the training block order (mixtures: their own)
    )

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
        if document_unit not in local_files.DOCUMENT_UNITS:
            raise ValueError(
                f"data.document_unit must be one of {local_files.DOCUMENT_UNITS}, got {document_unit!r}"
            )
        if encoding_errors not in local_files.ENCODING_ERRORS:
            raise ValueError(
                f"data.encoding_errors must be one of {local_files.ENCODING_ERRORS}, got {encoding_errors!r}"
            )
        if source not in src.SOURCES:
            raise ValueError(f"unknown data.source {source!r}; expected one of {src.SOURCES}")
        if block_size < 1 or batch_size < 1:
            raise ValueError(
                f"data.block_size and data.batch_size must be >= 1 (got {block_size}, {batch_size})"
            )
        self.source = source
        self.path = path
        self.name = name
        self.data_files = _plain(data_files)
        self.split = split
        self.val_split = val_split
        self.val_fraction = val_fraction
        self.text_column = text_column
        self.document_unit = document_unit
        self.encoding_errors = encoding_errors
        self.streaming = streaming
        self.tokenizer_path = tokenizer_path
        self.eos_token = eos_token
        self.add_bos = add_bos
        self.target_vocab_size = vocab_size
        self.tokenizer_train_bytes = tokenizer_train_bytes
        self.add_pad_token = add_pad_token
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.max_val_batches = max_val_batches
        self.encode_batch_docs = encode_batch_docs
        self.shuffle_buffer = shuffle_buffer
        self.cache_dir = cache_dir
        self.cache_shard_tokens = cache_shard_tokens
        self.run_dir = run_dir
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory

        self.tokenizer: Tokenizer | None = None
        self.special: SpecialTokens | None = None
        self.train_tokens: np.ndarray | None = None
        self.val_tokens: np.ndarray | None = None
        self._docs: tuple[Any, Any] | None = None
        self._resume: tuple[int, int] | None = None  # (epoch, batches consumed in that epoch)
        self._train_sampler: BlockSampler | None = None

    # ------------------------------------------------------------------ tokenizer
    @property
    def tokenizer_file(self) -> Path | None:
        return Path(self.run_dir) / TOKENIZER_FILE if self.run_dir else None

    @property
    def vocab_size(self) -> int:
        return self._require_tokenizer().get_vocab_size()

    @property
    def eot_id(self) -> int:
        """The document separator: the tokenizer's EOS (``data.eos_token`` overrides it)."""
        return self._require_special().eos_id(self._require_tokenizer())

    @property
    def bos_id(self) -> int | None:
        """Prepended to every document when the tokenizer config asks (``data.add_bos``)."""
        return self._require_special().bos_id(self._require_tokenizer())

    def _require_special(self) -> SpecialTokens:
        if self.special is None:
            tok = self._require_tokenizer()
            src = self.tokenizer_path or self.run_dir
            config = load_tokenizer_config(src) if src else {}
            self.special = special_tokens(
                tok,
                config,
                eos=self.eos_token,
                add_bos=self.add_bos,
                where=str(src or "tokenizer"),
            )
        return self.special

    def save_tokenizer_config(self, folder: str | Path) -> Path:
        """Write the special tokens as an HF ``tokenizer_config.json`` next to tokenizer.json."""
        import json

        f = Path(folder) / TOKENIZER_CONFIG_FILE
        tmp = f.with_name(f.name + ".tmp")
        tmp.write_text(json.dumps(hf_tokenizer_config(self._require_special()), indent=2))
        tmp.replace(f)
        return f

    def _require_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise RuntimeError(
                "LMDataModule: call prepare_data() and setup() first (no tokenizer yet)"
            )
        return self.tokenizer

    def _documents(self) -> tuple[Any, Any]:
        """(train_docs, val_docs) datasets; val is a real split or held-out documents."""
        if self._docs is None:
            kw = dict(
                path=self.path,
                name=self.name,
                data_files=self.data_files,
                streaming=self.streaming,
                text_column=self.text_column,
                document_unit=self.document_unit,
                encoding_errors=self.encoding_errors,
            )
            train = src.load_source(self.source, self.split, **kw)
            if self.val_split:
                val = src.load_source(self.source, self.val_split, **kw)
            else:
                train, val = src.split_train_val(
                    train, self.val_fraction, self.seed, self.text_column
                )
            self._docs = (train, val)
        return self._docs

    def _tokenizer_training_texts(self):
        train, _ = self._documents()
        if isinstance(train, datasets.Dataset):
            # a seeded random document order, so a byte cap still samples the whole corpus
            order = np.random.default_rng(self.seed).permutation(len(train))
            col = train.select_columns([self.text_column])
            for start in range(0, len(order), 256):
                yield from (
                    t or "" for t in col.select(order[start : start + 256])[self.text_column]
                )
        else:
            for ex in train:
                yield ex[self.text_column] or ""

    def build_tokenizer(self) -> Tokenizer:
        """Load (tokenizer_path, or run_dir/tokenizer.json from an earlier run) or train + save."""
        if self.tokenizer_path:
            return load_tokenizer(self.tokenizer_path)
        f = self.tokenizer_file
        if f is not None and f.exists():
            return load_tokenizer(f)
        tok = train_bpe(
            self._tokenizer_training_texts(),
            self.target_vocab_size,
            max_bytes=self.tokenizer_train_bytes,
            add_pad=self.add_pad_token,
        )
        if f is not None:
            save_tokenizer(tok, f)
            log.info("trained tokenizer (vocab %d) saved to %s", tok.get_vocab_size(), f)
        return tok

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        self.tokenizer = self.build_tokenizer()
        if self.cache_dir:
            self._ensure_cache()

    # ------------------------------------------------------------------ token cache
    def cache_key(self) -> str:
        """Hash of everything that determines the token ids: dataset config + tokenizer."""
        files: Any = self.data_files
        stats = []
        if self.source in ("text", "json", "parquet") and files is not None:
            flat = (
                files.values()
                if isinstance(files, dict)
                else [files]
                if isinstance(files, str)
                else files
            )
            for f in flat:
                for g in [f] if isinstance(f, str) else f:
                    if Path(g).exists():
                        st = Path(g).stat()
                        stats.append((str(Path(g).resolve()), st.st_size, int(st.st_mtime)))
        if self.source == "stdlib":
            import sys

            stats.append((str(src.stdlib_root()), sys.version))
        held_out = None if self.val_split else (self.val_fraction, self.seed)
        tok_hash = src.fingerprint(self._require_tokenizer().to_str(), self.eot_id, self.bos_id)
        parts = (
            self.source,
            self.path,
            self.name,
            files,
            stats,
            self.split,
            self.val_split,
            held_out,
            self.text_column,
            tok_hash,
            *((self.document_unit, self.encoding_errors) if self.source == "text" else ()),
        )
        label = (self.path or self.source).replace("/", "_")
        return f"{label}-{src.fingerprint(*parts)}"

    def _ensure_cache(self) -> Path:
        key = self.cache_key()
        if not cache.cache_exists(self.cache_dir, key):
            tok = self._require_tokenizer()
            train, val = self._documents()
            dtype = token_dtype(tok.get_vocab_size())
            splits = {
                name: encode_stream(
                    tok,
                    src.iter_texts(ds, self.text_column, self.encode_batch_docs),
                    self.eot_id,
                    dtype,
                    self.bos_id,
                )
                for name, ds in (("train", train), ("val", val))
            }
            d = cache.build_cache(
                self.cache_dir,
                key,
                splits,
                dtype,
                shard_tokens=self.cache_shard_tokens,
                info={"source": self.source, "path": self.path, "name": self.name},
            )
            log.info("tokenized cache written to %s", d)
        return Path(self.cache_dir).expanduser() / key

    def setup(self, stage: str | None = None) -> None:
        self._setup_tokenizer()
        if self.is_streaming:
            self._documents()  # fail early on a bad source; tokenized lazily in the workers
            return
        if stage in (None, "fit") and self.train_tokens is None:
            self.train_tokens = self._tokenize("train")
        if stage in (None, "fit", "validate") and self.val_tokens is None:
            self.val_tokens = self._tokenize("val")

    def _setup_tokenizer(self) -> None:
        """Load (or, single-process, build) the tokenizer and check it against the config."""
        if self.tokenizer is None:
            f = self.tokenizer_file
            if not self.tokenizer_path and (f is None or not f.exists()):
                _, world = dist_info(self.trainer)
                if world > 1:
                    raise ValueError(
                        "data.run_dir is required for multi-process runs: rank 0 saves the trained "
                        "tokenizer there and the other ranks load it"
                    )
            self.tokenizer = self.build_tokenizer()
        if self.tokenizer.get_vocab_size() > self.target_vocab_size and not self.tokenizer_path:
            raise ValueError(
                f"tokenizer in {self.tokenizer_file} has {self.tokenizer.get_vocab_size()} tokens but "
                f"data.vocab_size={self.target_vocab_size}; use a fresh run_dir or the matching vocab_size"
            )
        self._require_special()  # fail early if the tokenizer cannot separate documents

    @property
    def is_streaming(self) -> bool:
        """Blocks are packed on the fly from an iterable dataset (streaming without a cache)."""
        return self.streaming and not self.cache_dir

    def _tokenize(self, which: str) -> np.ndarray | cache.ShardedTokens:
        if self.cache_dir:
            tokens = cache.open_split(self.cache_dir, self._ensure_cache().name, which)
        else:
            train, val = self._documents()
            ds = train if which == "train" else val
            tok = self._require_tokenizer()
            dtype = token_dtype(tok.get_vocab_size())
            chunks = list(
                encode_stream(
                    tok,
                    src.iter_texts(ds, self.text_column, self.encode_batch_docs),
                    self.eot_id,
                    dtype,
                    self.bos_id,
                )
            )
            tokens = np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
        if len(tokens) < self.block_size + 1:
            raise ValueError(
                f"the {which} split has {len(tokens)} tokens, fewer than one block of block_size+1="
                f"{self.block_size + 1}; use more data or a smaller block_size"
            )
        return tokens

    def validate_model(self, vocab_size: int, block_size: int) -> None:
        """Raise a clear error when the model cannot take this data."""
        n = self.vocab_size
        if n > vocab_size:
            raise ValueError(
                f"the tokenizer has {n} tokens but model.vocab_size={vocab_size}; set model.vocab_size >= {n} "
                f"(or a smaller data.vocab_size)"
            )
        if self.block_size > block_size:
            raise ValueError(
                f"data.block_size={self.block_size} exceeds model.block_size={block_size}; "
                "the model cannot attend over sequences that long"
            )

    # ------------------------------------------------------------------ datasets / loaders
    def train_dataset(self) -> TokenBlockDataset:
        if self.train_tokens is None:
            self.setup("fit")
        return TokenBlockDataset(self.train_tokens, self.block_size)

    def val_dataset(self) -> TokenBlockDataset:
        if self.val_tokens is None:
            self.setup("validate")
        return TokenBlockDataset(self.val_tokens, self.block_size)

    def train_sampler(
        self, rank: int | None = None, world_size: int | None = None, even: bool | None = None
    ) -> BlockSampler:
        """This rank's block order. ``even`` (default: when world_size > 1) trims to equal shards."""
        if rank is None or world_size is None:
            rank, world_size = dist_info(self.trainer)
        ds = self.train_dataset()
        sampler = self.sampler_class(
            len(ds),
            rank=rank,
            world_size=world_size,
            shuffle=self.shuffle,
            seed=self.seed,
            even=world_size > 1 if even is None else even,
            epoch=self.trainer.current_epoch if self.trainer is not None else 0,
        )
        if self._resume is not None:
            r_epoch, r_batches = self._resume
            sampler.set_epoch(r_epoch)
            sampler.set_resume(r_epoch, r_batches * self.batch_size)
        return sampler

    def streaming_dataset(
        self, which: str = "train", rank: int | None = None, world_size: int | None = None
    ) -> StreamingBlockDataset:
        """The on-the-fly (iterable) block stream for ``streaming: true`` without a cache."""
        if rank is None or world_size is None:
            rank, world_size = dist_info(self.trainer)
        train, val = self._documents()
        train_ = which == "train"
        ds = StreamingBlockDataset(
            train if train_ else val,
            self._require_tokenizer(),
            self.block_size,
            text_column=self.text_column,
            rank=rank,
            world_size=world_size,
            batch_size=self.batch_size if train_ else self.val_batch_size,
            shuffle_buffer=self.shuffle_buffer if (train_ and self.shuffle) else 0,
            seed=self.seed,
            infinite=train_,
            encode_batch_docs=self.encode_batch_docs,
            eos_id=self.eot_id,
            bos_id=self.bos_id,
        )
        if train_ and self._resume is not None:
            # one endless Lightning epoch: the position is the number of batches consumed
            ds.skip_batches = self._resume[1]
        return ds

    def train_dataloader(
        self, rank: int | None = None, world_size: int | None = None, even: bool | None = None
    ) -> DataLoader:
        """Training batches for one rank (from the trainer / torch.distributed unless given)."""
        if self.is_streaming:
            return ResumableDataLoader(
                self,
                self.streaming_dataset("train", rank, world_size),
                batch_size=self.batch_size,
                drop_last=True,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
            )
        ds = self.train_dataset()
        self._train_sampler = sampler = self.train_sampler(rank, world_size, even)
        if len(sampler) < self.batch_size and self.drop_last:
            raise ValueError(
                f"training split has {len(sampler)} blocks per rank, fewer than one batch "
                f"(batch_size={self.batch_size}); use more data or smaller block_size/batch_size"
            )
        return ResumableDataLoader(
            self,
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        if self.is_streaming:
            ds = self.streaming_dataset("val")
            if self.max_val_batches is not None:
                ds.max_blocks = self.max_val_batches * self.val_batch_size
            return DataLoader(
                ds, batch_size=self.val_batch_size, num_workers=0, pin_memory=self.pin_memory
            )
        ds = self.val_dataset()
        rank, world = dist_info(self.trainer)
        n = len(ds)
        if self.max_val_batches is not None:
            n = min(n, self.max_val_batches * self.val_batch_size * world)
        # sequential, the same blocks every time; trimmed to equal per-rank counts under DDP
        sampler = BlockSampler(n, rank=rank, world_size=world, shuffle=False, even=world > 1)
        return DataLoader(
            ds,
            batch_size=self.val_batch_size,
            sampler=sampler,
            num_workers=0,
            pin_memory=self.pin_memory,
        )

    # ------------------------------------------------------------------ exact resume
    def state_dict(self) -> dict[str, Any]:
        """Data position saved in Lightning checkpoints: epoch and batches consumed in it."""
        t = self.trainer
        if t is None:
            epoch, batches = self._resume or (0, 0)
        else:
            epoch = t.current_epoch
            progress = t.fit_loop.epoch_loop.batch_progress
            batches = progress.total.processed if self.is_streaming else progress.current.processed
            n = t.num_training_batches
            if isinstance(n, int) and batches >= n:  # saved at epoch end: resume at the next epoch
                epoch, batches = epoch + 1, 0
        return {
            "version": STATE_VERSION,
            "epoch": int(epoch),
            "batches": int(batches),
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("batch_size", self.batch_size) != self.batch_size:
            log.warning("data.batch_size changed on resume; the data position is approximate")
        self._resume = (int(state_dict["epoch"]), int(state_dict["batches"]))


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position lives in Lightning checkpoints (via its LMDataModule).

    Lightning saves ``state_dict()`` of stateful train loaders and calls ``load_state_dict`` on
    restore before iterating. The position itself is computed by the DataModule from the
    trainer's batch counter (not from the loader, which prefetches ahead of training).
    """

    def __init__(self, datamodule: LMDataModule, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dm = datamodule

    def state_dict(self) -> dict[str, Any]:
        return self._dm.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._dm.load_state_dict(state_dict)
        epoch, batches = self._dm._resume
        if hasattr(self.dataset, "skip_batches"):  # streaming (a source or a mixture of them)
            self.dataset.skip_batches = batches
        elif isinstance(self.sampler, BlockSampler):
            self.sampler.set_epoch(epoch)
            self.sampler.set_resume(epoch, batches * self.batch_size)


def _plain(x: Any) -> Any:
    """OmegaConf containers -> plain Python (datasets wants real lists/dicts)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(x, DictConfig | ListConfig):
            return OmegaConf.to_container(x, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return x
