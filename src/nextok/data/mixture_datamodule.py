"""``MixtureDataModule``: several named, weighted sources behind one :class:`LMDataModule` API.

``conf/data/mixture.yaml``::

    sources:
      code: {weight: 0.7, source: stdlib}
      prose: {weight: 0.3, source: text, data_files: /data/books/*.txt}

Each source is an :class:`LMDataModule` of its own (any source it reads: stdlib, hub, local
text/json/parquet, streaming or not); keys a source does not set come from the top-level
``data.*`` keys. With a streaming source (and no ``cache_dir``) the mixture is an endless stream
(:mod:`nextok.data.mixture_stream`); otherwise blocks are drawn by index. One tokenizer is trained on all
sources (bytes split by weight) and shared. Training draws blocks by the deterministic schedule of
:mod:`nextok.data.mixture`; validation keeps one loader per source (``val/loss/<name>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from nextok.data.blocks import BlockSampler
from nextok.data.datamodule import LMDataModule, _plain, dist_info
from nextok.data.mixture import (
    SOURCE_KEYS,
    MixtureBlockDataset,
    MixtureSampler,
    MixtureSchedule,
    normalize_weights,
)
from nextok.data.mixture_stream import MixtureStreamDataset


class MixtureDataModule(LMDataModule):
    """Training data mixed from ``sources`` by weight; per-source validation.

    Args:
        sources: ``{name: {weight, source, path, name, data_files, split, val_split, val_fraction,
            text_column, streaming}}``; only ``weight`` is required.
        mixture_chunk: positions per schedule chunk (proportions are exact at chunk boundaries).
        **kwargs: every other :class:`LMDataModule` argument, shared by all sources.
    """

    sampler_class = MixtureSampler

    def __init__(
        self, sources: dict[str, dict] | None = None, mixture_chunk: int = 256, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        sources = _plain(sources)
        if not isinstance(sources, dict) or not sources:
            raise ValueError(
                "data.sources must map source names to {weight: ..., source: ..., ...} "
                f"(got {sources!r})"
            )
        shared = {k: v for k, v in kwargs.items() if k not in ("run_dir", "tokenizer_path")}
        self.names: list[str] = []
        self.children: list[LMDataModule] = []
        weights = []
        for name, spec in sources.items():
            spec = dict(spec or {})
            if "weight" not in spec:
                raise ValueError(f"data.sources.{name}.weight is required")
            weights.append(spec.pop("weight"))
            bad = sorted(set(spec) - set(SOURCE_KEYS))
            if bad:
                raise ValueError(
                    f"data.sources.{name}: unknown key(s) {bad}; a source takes weight and "
                    f"{list(SOURCE_KEYS)}"
                )
            child = LMDataModule(**{**shared, **spec})
            self.names.append(str(name))
            self.children.append(child)
        self.weights = normalize_weights(weights, self.names)
        self.schedule = MixtureSchedule(self.weights, self.seed, mixture_chunk)

    @property
    def val_names(self) -> list[str]:
        """Validation groups, in the order of :meth:`val_dataloader`'s loaders."""
        return list(self.names)

    @property
    def is_streaming(self) -> bool:
        """A source streams without a cache: the mixture is then an endless stream too."""
        return any(c.is_streaming for c in getattr(self, "children", ()))

    # ------------------------------------------------------------------ tokenizer / tokens
    def _tokenizer_training_texts(self) -> Iterator[str]:
        """Each source's texts up to its weight's share of ``tokenizer_train_bytes``."""
        for child, w in zip(self.children, self.weights):
            budget = None if self.tokenizer_train_bytes is None else w * self.tokenizer_train_bytes
            seen = 0
            for text in child._tokenizer_training_texts():
                if budget is not None and seen >= budget:
                    break
                seen += len(text.encode("utf-8", "replace"))
                yield text

    def _share_tokenizer(self) -> None:
        """Every source encodes with the mixture's tokenizer and special tokens (EOS/BOS)."""
        special = self._require_special()
        for child in self.children:
            child.tokenizer, child.special = self.tokenizer, special

    def prepare_data(self) -> None:
        self.tokenizer = self.build_tokenizer()
        self._share_tokenizer()
        if self.cache_dir:
            for child in self.children:
                child._ensure_cache()

    def setup(self, stage: str | None = None) -> None:
        self._setup_tokenizer()
        self._share_tokenizer()
        for name, child in zip(self.names, self.children):
            try:
                if child.is_streaming:
                    child._documents()  # fail early on a bad source; read lazily in the workers
                    continue
                if stage in (None, "fit") and child.train_tokens is None:
                    child.train_tokens = child._tokenize("train")
                if stage in (None, "fit", "validate") and child.val_tokens is None:
                    child.val_tokens = child._tokenize("val")
            except ValueError as e:
                raise ValueError(f"data.sources.{name}: {e}") from e

    # ------------------------------------------------------------------ datasets / loaders
    def train_dataset(self) -> MixtureBlockDataset:
        if any(c.train_tokens is None for c in self.children):
            self.setup("fit")
        return MixtureBlockDataset(
            [c.train_dataset() for c in self.children], self.schedule, self.seed
        )

    def streaming_dataset(
        self, which: str = "train", rank: int | None = None, world_size: int | None = None
    ) -> MixtureStreamDataset:
        """The endless training stream of a mixture with streaming sources."""
        if which != "train":
            raise ValueError("a mixture validates per source (see val_dataloader)")
        if rank is None or world_size is None:
            rank, world_size = dist_info(self.trainer)
        ds = MixtureStreamDataset(
            [
                c.streaming_dataset("train", rank, world_size)
                if c.is_streaming
                else c.train_dataset()
                for c in self.children
            ],
            self.schedule,
            rank=rank,
            world_size=world_size,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        if self._resume is not None:
            ds.skip_batches = self._resume[1]
        return ds

    def val_dataloader(self) -> list[DataLoader]:
        """One sequential loader per source (each capped by ``max_val_batches``)."""
        if any(c.val_tokens is None and not c.is_streaming for c in self.children):
            self.setup("validate")
        rank, world = dist_info(self.trainer)
        loaders = []
        for child in self.children:
            if child.is_streaming:
                stream = child.streaming_dataset("val", rank, world)
                if self.max_val_batches is not None:
                    stream.max_blocks = self.max_val_batches * self.val_batch_size
                loaders.append(DataLoader(stream, batch_size=self.val_batch_size, num_workers=0))
                continue
            ds = child.val_dataset()
            n = len(ds)
            if self.max_val_batches is not None:
                n = min(n, self.max_val_batches * self.val_batch_size * world)
            sampler = BlockSampler(n, rank=rank, world_size=world, shuffle=False, even=world > 1)
            loaders.append(
                DataLoader(
                    ds,
                    batch_size=self.val_batch_size,
                    sampler=sampler,
                    num_workers=0,
                    pin_memory=self.pin_memory,
                )
            )
        return loaders

    # ------------------------------------------------------------------ accounting
    def tokens_per_source(self, epoch: int, batches: int) -> dict[str, int]:
        """Tokens each source supplied to all ranks after ``batches`` per-rank batches of ``epoch``.

        Exact and free of communication: the schedule decides every position. Each nominal epoch
        gives every rank ``P`` positions of which ``P // batch_size`` full batches are used.
        """
        _, world = dist_info(self.trainer)
        if self.is_streaming:  # one endless epoch
            counts = self.schedule.counts(batches * self.batch_size * world)
            return {n: int(c) * self.block_size for n, c in zip(self.names, counts)}
        per_rank = sum(c.train_dataset().n_blocks for c in self.children) // world
        used = (per_rank // self.batch_size) * self.batch_size if self.drop_last else per_rank
        counts = 0
        for e in range(epoch + 1):
            take = used if e < epoch else min(used, batches * self.batch_size)
            start = e * per_rank * world
            counts = (
                counts + self.schedule.counts(start + take * world) - self.schedule.counts(start)
            )
        return {n: int(c) * self.block_size for n, c in zip(self.names, counts)}

    def source_blocks(self) -> dict[str, int]:
        """Training blocks available per source (one nominal epoch is their sum)."""
        return {n: len(c.train_dataset()) for n, c in zip(self.names, self.children)}
