"""Streaming mixtures: the schedule of :mod:`nextok.data.mixture.schedule` over on-the-fly block streams.

Used when a mixture has a streaming source without a cache. Rank ``r`` of ``W`` still reads
global positions ``g = i * W + r`` (``i``: its sample index) and position ``g`` still comes from
source ``s(g)``; what changes is where a source's next block comes from: every (rank, virtual
DataLoader worker) pair reads its own shard of every source, in order (a map-style source: its
blocks reshuffled per pass and strided over the shards). Worker ``v`` produces the rank's
batches ``v, v + n_workers, ...``, so its sources' streams advance by the schedule alone.

Resume is a deterministic replay: after ``k`` batches, each virtual worker counts, per source,
the blocks its own earlier batches drew and skips that many blocks of that source.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from itertools import count

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from nextok.data.blocks import TokenBlockDataset
from nextok.data.mixture.schedule import MixtureSchedule
from nextok.data.streaming import StreamingBlockDataset


def _map_blocks(
    ds: TokenBlockDataset, seed: int, source: int, shard: int, num_shards: int
) -> Iterator[np.ndarray]:
    """A map-style source as an endless stream: per-pass permutation, strided over shards."""
    for epoch in count():
        perm = np.random.default_rng([seed, source, epoch]).permutation(len(ds))
        mine = perm[shard::num_shards]
        if len(mine) == 0:
            raise ValueError(f"mixture source {source} has fewer blocks than {num_shards} shards")
        for i in mine:
            yield ds.block(int(i))


def _stream_blocks(
    ds: StreamingBlockDataset, source: int, shard: int, num_shards: int
) -> Iterator[np.ndarray]:
    for epoch in count():
        produced = 0
        for block in ds.epoch_blocks(epoch, shard, num_shards):
            produced += 1
            yield block
        if produced == 0:
            raise ValueError(
                f"mixture source {source}: shard {shard}/{num_shards} has no complete block; "
                "use fewer workers/ranks or a smaller block_size"
            )


class MixtureStreamDataset(IterableDataset):
    """Yields this rank's mixture samples ``(x, y)`` in order, sharded over DataLoader workers."""

    def __init__(
        self,
        sources: Sequence[StreamingBlockDataset | TokenBlockDataset],
        schedule: MixtureSchedule,
        *,
        rank: int,
        world_size: int,
        batch_size: int,
        seed: int,
    ) -> None:
        self.sources = list(sources)
        self.schedule = schedule
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.seed = seed
        self.skip_batches = 0  # batches this rank already consumed (resume)

    def _source_iter(self, s: int, shard: int, num_shards: int) -> Iterator[np.ndarray]:
        src = self.sources[s]
        if isinstance(src, StreamingBlockDataset):
            return _stream_blocks(src, s, shard, num_shards)
        return _map_blocks(src, self.seed, s, shard, num_shards)

    def _sources_of_batch(self, b: int) -> list[int]:
        first = b * self.batch_size
        return [
            self.schedule.locate((first + j) * self.world_size + self.rank)[0]
            for j in range(self.batch_size)
        ]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and nw > 1:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        vid = (
            wid + self.skip_batches
        ) % nw  # the stream due at this worker's turn (see streaming.py)
        shard, num_shards = self.rank * nw + vid, self.world_size * nw
        iters: dict[int, Iterator[np.ndarray]] = {}

        def take(s: int) -> np.ndarray:
            if s not in iters:
                iters[s] = self._source_iter(s, shard, num_shards)
            return next(iters[s])

        start = self.skip_batches + (vid - self.skip_batches) % nw  # first batch >= skip of `vid`
        for b in range(vid, start, nw):  # replay: skip what this virtual worker already served
            for s in self._sources_of_batch(b):
                take(s)
        for b in count(start, nw):
            for s in self._sources_of_batch(b):
                t = torch.from_numpy(np.asarray(take(s), dtype=np.int64))
                yield t[:-1], t[1:]
