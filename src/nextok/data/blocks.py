"""Map-style block access over a flat token array, and a deterministic, shardable, resumable sampler.

The flat array is the whole tokenized split (in memory, or a numpy memmap from the cache), so
block ``i`` is simply ``tokens[i*(B+1) : (i+1)*(B+1)]``. Sharding, shuffling and resuming are then
pure index arithmetic: exact, and independent of the number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from nextok.data.packing import num_blocks


class TokenBlockDataset(Dataset):
    """``dataset[i] -> (x, y)`` int64 tensors of length ``block_size`` from block ``i``."""

    def __init__(self, tokens: np.ndarray, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1 (got {block_size})")
        self.tokens = tokens
        self.block_size = block_size
        self.n_blocks = num_blocks(len(tokens), block_size)

    def __len__(self) -> int:
        return self.n_blocks

    def block(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block index {i} out of range [0, {self.n_blocks})")
        n = self.block_size + 1
        return np.asarray(self.tokens[i * n : (i + 1) * n], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(self.block(int(i)))
        return t[:-1], t[1:]


class BlockSampler(DistributedSampler):
    """Block indices for one rank: seeded per-epoch permutation, strided across ranks, resumable.

    It subclasses ``DistributedSampler`` so Lightning neither replaces it under DDP nor forgets to
    call :meth:`set_epoch`. Indices are computed when iteration starts, from ``(seed, epoch)``
    only, so every rank agrees and a resumed run regenerates the same order.

    ``even=True`` trims the epoch so every rank gets the same number of blocks (DDP needs equal
    batch counts; with shuffling the few trimmed blocks differ each epoch). ``even=False`` keeps
    every block: one pass over all ranks is exactly the single-process set of blocks.
    """

    def __init__(
        self,
        n_blocks: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 1337,
        even: bool = True,
        epoch: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        # Deliberately not calling DistributedSampler.__init__: it requires an initialised process
        # group, while we take rank/world_size explicitly (tests simulate ranks this way).
        self.n_blocks = n_blocks
        self.num_replicas = world_size
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = even
        self.epoch = epoch
        self.resume_epoch: int | None = None
        self.resume_offset = 0  # samples of `resume_epoch` already consumed on this rank

    def set_resume(self, epoch: int, offset: int) -> None:
        """Skip the first ``offset`` samples of ``epoch`` (this rank's) when that epoch is iterated."""
        self.resume_epoch, self.resume_offset = epoch, offset

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """All of this rank's block indices for ``epoch`` (before any resume offset)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)
        else:
            order = np.arange(self.n_blocks)
        if self.drop_last:
            order = order[: self.n_blocks - self.n_blocks % self.num_replicas]
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        idx = self.epoch_indices(self.epoch)
        if self.resume_epoch == self.epoch:
            idx = idx[self.resume_offset :]
        return iter(idx.tolist())

    def __len__(self) -> int:
        # The full epoch length, also when resuming: Lightning counts the already-consumed batches
        # of a resumed epoch itself, so the iterator just ends earlier.
        if self.drop_last:
            return self.n_blocks // self.num_replicas
        return len(range(self.rank, self.n_blocks, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
