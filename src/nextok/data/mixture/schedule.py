"""Weighted mixtures of token-block sources: a deterministic schedule, pure index arithmetic.

The mixture is one endless sequence of global positions ``g = 0, 1, 2, ...``. Position ``g``
takes its block from source ``source_of(g)``: positions are cut into chunks of ``chunk``
positions; each chunk gets per-source quotas that keep every source's running count within one
block of ``weight x positions`` (a deficit / largest-remainder rule), and its order is shuffled
from ``(seed, chunk)``. The ``k``-th block a source contributes is block ``perm_e[k % n]`` of its
own split, ``perm_e`` a permutation seeded by ``(seed, source, e = k // n)``: sources cycle
independently, each reshuffled every pass.

Everything is a function of ``(weights, seed, g)``, so sharding over ranks (rank ``r`` takes
``g = r, r + W, ...``) and DataLoader workers (any subset of positions) and exact resume (skip the
consumed positions) need no state beyond the position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from nextok.data.blocks import BlockSampler, TokenBlockDataset

SOURCE_KEYS = (
    "source",
    "path",
    "name",
    "data_files",
    "split",
    "val_split",
    "val_fraction",
    "text_column",
    "streaming",
)


def normalize_weights(weights: Sequence[float], names: Sequence[str]) -> np.ndarray:
    w = np.asarray([float(x) for x in weights], dtype=np.float64)
    for name, x in zip(names, w):
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"data.sources.{name}.weight must be a positive number (got {x})")
    return w / w.sum()


class MixtureSchedule:
    """Which source each global position reads, and how many earlier positions read it."""

    def __init__(self, weights: Sequence[float], seed: int, chunk: int = 256) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.weights = self.weights / self.weights.sum()
        # every source gets >= 1 block per chunk on average, so the deficit rule never goes negative
        self.chunk = max(int(chunk), math.ceil(1.0 / float(self.weights.min())))
        self.seed = seed
        self._cum: list[np.ndarray] = [np.zeros(len(self.weights), dtype=np.int64)]
        self._orders: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_sources(self) -> int:
        return len(self.weights)

    def _cum_at(self, c: int) -> np.ndarray:
        """Blocks per source in positions ``[0, c * chunk)``."""
        while len(self._cum) <= c:
            k = len(self._cum)
            prev = self._cum[-1]
            deficit = self.weights * (k * self.chunk) - prev
            quota = np.floor(deficit).astype(np.int64)
            rest = self.chunk - int(quota.sum())
            if rest > 0:  # largest fractional deficits first, ties by source order
                order = np.lexsort((np.arange(len(quota)), -(deficit - quota)))
                quota[order[:rest]] += 1
            self._cum.append(prev + quota)
        return self._cum[c]

    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each position in chunk c, its index among that source's blocks)."""
        hit = self._orders.get(c)
        if hit is None:
            quota = self._cum_at(c + 1) - self._cum_at(c)
            order = np.repeat(np.arange(self.num_sources), quota)
            np.random.default_rng([self.seed, 0x6D6978, c]).shuffle(order)
            rank = np.empty_like(order)
            for s in range(self.num_sources):
                where = order == s
                rank[where] = self._cum_at(c)[s] + np.arange(int(where.sum()))
            if len(self._orders) > 64:
                self._orders.clear()
            self._orders[c] = hit = (order, rank)
        return hit

    def locate(self, g: int) -> tuple[int, int]:
        """``(source, k)``: position ``g`` reads the ``k``-th block drawn from ``source``."""
        c, off = divmod(int(g), self.chunk)
        order, rank = self._chunk(c)
        return int(order[off]), int(rank[off])

    def counts(self, n: int) -> np.ndarray:
        """Blocks each source contributes to positions ``[0, n)``."""
        c, off = divmod(int(n), self.chunk)
        out = self._cum_at(c).copy()
        if off:
            order, _ = self._chunk(c)
            out += np.bincount(order[:off], minlength=self.num_sources)
        return out


class MixtureBlockDataset(Dataset):
    """``dataset[g] -> (x, y)`` for global position ``g`` of the mixture (endless)."""

    def __init__(
        self, datasets: Sequence[TokenBlockDataset], schedule: MixtureSchedule, seed: int
    ) -> None:
        if len(datasets) != schedule.num_sources:
            raise ValueError("one dataset per mixture source is required")
        for i, ds in enumerate(datasets):
            if len(ds) == 0:
                raise ValueError(f"mixture source {i} has no complete block")
        self.datasets = list(datasets)
        self.schedule = schedule
        self.seed = seed
        self._perm: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:  # nominal: one pass over every source's blocks
        return sum(len(d) for d in self.datasets)

    def block_index(self, source: int, k: int) -> int:
        n = len(self.datasets[source])
        epoch, j = divmod(k, n)
        key = (source, epoch)
        perm = self._perm.get(key)
        if perm is None:
            if len(self._perm) > 2 * len(self.datasets):
                self._perm.clear()
            perm = np.random.default_rng([self.seed, source, epoch]).permutation(n)
            self._perm[key] = perm
        return int(perm[j])

    def locate(self, g: int) -> tuple[int, int]:
        """``(source, block index in that source)`` of global position ``g``."""
        s, k = self.schedule.locate(g)
        return s, self.block_index(s, k)

    def __getitem__(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, i = self.locate(int(g))
        return self.datasets[s][i]


class MixtureSampler(BlockSampler):
    """Global mixture positions for one rank: ``g = (epoch * P + i) * W + rank``.

    An "epoch" is a nominal ``P = n_positions // W`` positions per rank (``n_positions``: the
    blocks of all sources together); positions keep counting across epochs, so the stream never
    repeats a schedule. Resume uses :class:`BlockSampler`'s (epoch, offset) mechanism.
    """

    def epoch_indices(self, epoch: int) -> np.ndarray:
        per_rank = self.n_blocks // self.num_replicas
        i = np.arange(epoch * per_rank, (epoch + 1) * per_rank, dtype=np.int64)
        return i * self.num_replicas + self.rank

    def __len__(self) -> int:
        return self.n_blocks // self.num_replicas

    def consumed(self, epoch: int, per_rank_samples: int) -> int:
        """Global positions consumed by all ranks after ``per_rank_samples`` of ``epoch`` each."""
        return (epoch * len(self) + per_rank_samples) * self.num_replicas
