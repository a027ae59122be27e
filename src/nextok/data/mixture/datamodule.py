"""``MixtureDataModule``: several named, weighted sources behind one :class:`LMDataModule` API.

``conf/data/mixture.yaml``::

    sources:
      code: {weight: 0.7, source: stdlib}
      prose: {weight: 0.3, source: text, data_files: /data/books/*.txt}

Each source is an :class:`LMDataModule` of its own (any source it reads: stdlib, hub, local
text/json/parquet, streaming or not); keys a source does not set come from the top-level
``data.*`` keys. With a streaming source (and no ``cache_dir``) the mixture is an endless stream
(:mod:`nextok.data.mixture.stream`); otherwise blocks are drawn by index. One tokenizer is trained on all
sources (bytes split by weight) and shared. Training draws blocks by the deterministic schedule of
:mod:`nextok.data.mixture.schedule`; validation keeps one loader per source (``val/loss/<name>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from nextok.data.datamodule import LMDataModule
from nextok.data.loaders import split_val_loader, stream_val_loader
from nextok.data.mixture.schedule import (
    SOURCE_KEYS,
    MixtureBlockDataset,
    MixtureSampler,
    MixtureSchedule,
    normalize_weights,
)
from nextok.data.mixture.stream import MixtureStreamDataset
from nextok.distributed.ranks import data_parallel_rank_size
from nextok.plain import to_plain


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
        sources = to_plain(sources)
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
            try:
                child = LMDataModule(**{**shared, **spec})
            except ValueError as err:  # name the source (its keys are data.sources.<name>.*)
                raise ValueError(f"data.sources.{name}: {err}") from err
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
    def tokenizer_training_texts(self) -> Iterator[str]:
        """Each source's texts up to its weight's share of ``tokenizer_train_bytes``."""
        for child, w in zip(self.children, self.weights):
            budget = None if self.tokenizer_train_bytes is None else w * self.tokenizer_train_bytes
            seen = 0
            for text in child.tokenizer_training_texts():
                if budget is not None and seen >= budget:
                    break
                seen += len(text.encode("utf-8", "replace"))
                yield text

    def _share_tokenizer(self) -> None:
        """Every source encodes with the mixture's tokenizer and special tokens (EOS/BOS)."""
        special = self.special_tokens
        for child in self.children:
            child.tokenizer, child.special = self.tokenizer, special

    def prepare_tokenizer(self, *args: Any, **kwargs: Any) -> None:
        """One tokenizer for all sources (see :meth:`LMDataModule.prepare_tokenizer`)."""
        super().prepare_tokenizer(*args, **kwargs)
        self._share_tokenizer()

    def prepare_data(self) -> None:
        self.prepare_tokenizer()
        if self.cache_dir:
            for child in self.children:
                child.ensure_cache()

    def setup(self, stage: str | None = None) -> None:
        self._ready_tokenizer()
        self._share_tokenizer()
        for name, child in zip(self.names, self.children):
            try:
                child.load_splits(stage)
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
        rank, world_size = self._ranks(rank, world_size)
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
        if self.resume_position is not None:
            ds.skip_batches = self.resume_position[1]
        return ds

    def val_dataloader(self) -> list[DataLoader]:
        """One sequential loader per source (each capped by ``max_val_batches``)."""
        if any(c.val_tokens is None and not c.is_streaming for c in self.children):
            self.setup("validate")
        rank, world = data_parallel_rank_size(self.trainer)
        loaders = []
        for child in self.children:
            if child.is_streaming:
                stream = child.streaming_dataset("val", rank, world)
                loaders.append(
                    stream_val_loader(
                        stream, self.val_batch_size, self.max_val_batches, self.pin_memory
                    )
                )
            else:
                loaders.append(
                    split_val_loader(
                        child.val_dataset(),
                        rank,
                        world,
                        self.val_batch_size,
                        self.max_val_batches,
                        self.pin_memory,
                    )
                )
        return loaders

    # ------------------------------------------------------------------ accounting
    def tokens_per_source(self, epoch: int, batches: int) -> dict[str, int]:
        """Tokens each source supplied to all ranks after ``batches`` per-rank batches of ``epoch``.

        Exact and free of communication: the schedule decides every position. Each nominal epoch
        gives every rank ``P`` positions of which ``P // batch_size`` full batches are used.
        """
        _, world = data_parallel_rank_size(self.trainer)
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
