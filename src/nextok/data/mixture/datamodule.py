"""``MixtureDataModule``: several named, weighted sources behind one :class:`LMDataModule` API.

``conf/data/mixture.yaml``::

    sources:
      code: {weight: 0.7, source: stdlib}
      prose: {weight: 0.3, source: text, data_files: /data/books/*.txt}

Each source is a :class:`~nextok.data.sources.DocumentSource` of its own (stdlib, hub, local
text/json/parquet, streaming or not); keys a source does not set come from the top-level
``data.*`` keys. With a streaming source (and no ``cache_dir``) the mixture is an endless stream
(:mod:`nextok.data.mixture.stream`); otherwise blocks are drawn by index. One tokenizer is
trained on all sources (bytes split by weight) and encodes them all. Training draws blocks by
the deterministic schedule of :mod:`nextok.data.mixture.schedule`; validation keeps one loader
per source (``val/loss/<name>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from nextok.data.blocks import TokenBlockDataset
from nextok.data.datamodule import LMDataModule, Tokens
from nextok.data.mixture.schedule import (
    SOURCE_KEYS,
    MixtureBlockDataset,
    MixtureSampler,
    MixtureSchedule,
    normalize_weights,
)
from nextok.data.mixture.stream import MixtureStreamDataset
from nextok.data.sources import DocumentSource, make_source
from nextok.distributed.ranks import data_parallel_rank_size
from nextok.plain import to_plain

# the top-level keys a source's settings default to
_SOURCE_DEFAULTS = (*SOURCE_KEYS, "seed", "document_unit", "encoding_errors")


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
        base = self.corpus
        shared = {k: getattr(base, k) for k in _SOURCE_DEFAULTS if k != "source"}
        shared["source"] = base.kind
        self.names: list[str] = []
        self.sources: list[DocumentSource] = []
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
                self.sources.append(make_source(**{**shared, **spec}))
            except ValueError as err:  # name the source (its keys are data.sources.<name>.*)
                raise ValueError(f"data.sources.{name}: {err}") from err
            self.names.append(str(name))
        self.weights = normalize_weights(weights, self.names)
        self.schedule = MixtureSchedule(self.weights, self.seed, mixture_chunk)
        self.train_parts: list[Tokens | None] = [None] * len(self.sources)
        self.val_parts: list[Tokens | None] = [None] * len(self.sources)

    @property
    def val_names(self) -> list[str]:
        """Validation groups, in the order of :meth:`val_dataloader`'s loaders."""
        return list(self.names)

    def _streams(self, corpus: DocumentSource) -> bool:
        return corpus.streaming and not self.cache_dir

    @property
    def is_streaming(self) -> bool:
        """A source streams without a cache: the mixture is then an endless stream too."""
        return any(self._streams(c) for c in getattr(self, "sources", ()))

    # ------------------------------------------------------------------ tokenizer / tokens
    def tokenizer_training_texts(self) -> Iterator[str]:
        """Each source's texts up to its weight's share of ``tokenizer_train_bytes``."""
        for corpus, w in zip(self.sources, self.weights):
            budget = None if self.tokenizer_train_bytes is None else w * self.tokenizer_train_bytes
            seen = 0
            for text in corpus.training_texts():
                if budget is not None and seen >= budget:
                    break
                seen += len(text.encode("utf-8", "replace"))
                yield text

    def prepare_data(self) -> None:
        self.prepare_tokenizer()
        if self.cache_dir:
            for corpus in self.sources:
                self.token_splits(corpus).ensure_cache()

    def load_splits(self, stage: str | None) -> None:
        """Every source's splits (see :meth:`LMDataModule.load_splits`), errors named by source."""
        for i, (name, corpus) in enumerate(zip(self.names, self.sources)):
            try:
                if self._streams(corpus):
                    corpus.documents()
                    continue
                splits = self.token_splits(corpus)
                if stage in (None, "fit") and self.train_parts[i] is None:
                    self.train_parts[i] = splits.load("train")
                if stage in (None, "fit", "validate") and self.val_parts[i] is None:
                    self.val_parts[i] = splits.load("val")
            except ValueError as e:
                raise ValueError(f"data.sources.{name}: {e}") from e

    # ------------------------------------------------------------------ datasets / loaders
    def _part(self, i: int, which: str) -> TokenBlockDataset:
        parts = self.train_parts if which == "train" else self.val_parts
        if parts[i] is None:
            self.setup("fit" if which == "train" else "validate")
        return TokenBlockDataset(parts[i], self.block_size)

    def train_dataset(self) -> MixtureBlockDataset:
        return MixtureBlockDataset(
            [self._part(i, "train") for i in range(len(self.sources))], self.schedule, self.seed
        )

    def streaming_dataset(
        self, which: str = "train", rank: int | None = None, world_size: int | None = None
    ) -> MixtureStreamDataset:
        """The endless training stream of a mixture with streaming sources."""
        if which != "train":
            raise ValueError("a mixture validates per source (see val_dataloader)")
        rank, world_size = self._ranks(rank, world_size)
        return MixtureStreamDataset(
            [
                self.block_stream(c, "train", rank, world_size)
                if self._streams(c)
                else self._part(i, "train")
                for i, c in enumerate(self.sources)
            ],
            self.schedule,
            rank=rank,
            world_size=world_size,
            batch_size=self.loaders.batch_size,
            seed=self.seed,
        )

    def val_dataloader(self) -> list[DataLoader]:
        """One sequential loader per source (each capped by ``max_val_batches``)."""
        rank, world = data_parallel_rank_size(self.trainer)
        loaders = []
        for i, corpus in enumerate(self.sources):
            if self._streams(corpus):
                stream = self.block_stream(corpus, "val", rank, world)
                loaders.append(self.loaders.stream_val_loader(stream))
            else:
                loaders.append(self.loaders.val_loader(self._part(i, "val"), rank, world))
        return loaders

    # ------------------------------------------------------------------ accounting
    def tokens_per_source(self, epoch: int, batches: int) -> dict[str, int]:
        """Tokens each source supplied to all ranks after ``batches`` per-rank batches of ``epoch``.

        Exact and free of communication: the schedule decides every position. Each nominal epoch
        gives every rank ``P`` positions of which ``P // batch_size`` full batches are used.
        """
        _, world = data_parallel_rank_size(self.trainer)
        if self.is_streaming:  # one endless epoch
            counts = self.schedule.counts(batches * self.loaders.batch_size * world)
            return {n: int(c) * self.block_size for n, c in zip(self.names, counts)}
        per_rank = sum(self.source_blocks().values()) // world
        used = (
            (per_rank // self.loaders.batch_size) * self.loaders.batch_size
            if self.loaders.drop_last
            else per_rank
        )
        counts = 0
        for e in range(epoch + 1):
            take = used if e < epoch else min(used, batches * self.loaders.batch_size)
            start = e * per_rank * world
            counts = (
                counts + self.schedule.counts(start + take * world) - self.schedule.counts(start)
            )
        return {n: int(c) * self.block_size for n, c in zip(self.names, counts)}

    def source_blocks(self) -> dict[str, int]:
        """Training blocks available per source (one nominal epoch is their sum)."""
        return {n: len(self._part(i, "train")) for i, n in enumerate(self.names)}
