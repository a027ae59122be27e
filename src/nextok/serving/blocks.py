"""The block allocator of the paged KV cache: a free list of fixed-size block ids, each with a
reference count (a block of a shared prompt prefix is held by every sequence that reads it)."""

from __future__ import annotations

from collections import deque


class OutOfBlocks(RuntimeError):
    """No free block is left; the scheduler queues or preempts a sequence instead."""


class BlockAllocator:
    """Hands out block ids ``0 .. num_blocks-1``; a freed block is reused first (warm memory).

    :meth:`share` adds a holder to a block; :meth:`free` drops one and returns the block to the
    free list with its last holder. Double frees and foreign ids raise: a block owned twice
    would silently mix two sequences.
    """

    def __init__(self, num_blocks: int) -> None:
        if not isinstance(num_blocks, int) or isinstance(num_blocks, bool) or num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive integer, got {num_blocks!r}")
        self.num_blocks = num_blocks
        self._free: deque[int] = deque(range(num_blocks))
        self._refs = [0] * num_blocks
        self.peak_used = 0

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise OutOfBlocks(f"all {self.num_blocks} KV blocks are in use")
        block = self._free.pop()
        self._refs[block] = 1
        self.peak_used = max(self.peak_used, self.num_used)
        return block

    def refs(self, block: int) -> int:
        """How many holders ``block`` has (0: free)."""
        return self._refs[block]

    def share(self, block: int) -> None:
        """One more holder of an allocated ``block``."""
        self._check(block)
        self._refs[block] += 1

    def free(self, block: int) -> bool:
        """Drop one holder of ``block``; True when that was the last (the block is free again)."""
        self._check(block)
        self._refs[block] -= 1
        if self._refs[block]:
            return False
        self._free.append(block)
        return True

    def _check(self, block: int) -> None:
        if not 0 <= block < self.num_blocks or not self._refs[block]:
            raise ValueError(f"block {block} is not allocated")
