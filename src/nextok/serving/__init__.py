"""Serving: a paged KV cache and a continuous-batching engine (plain PyTorch).

- :mod:`~nextok.serving.blocks`: the block allocator (free list).
- :mod:`~nextok.serving.paged_cache`: per-layer block pools, block tables, and the attention of
  one forward over them (:class:`PagedStep`, a :class:`nextok.model.AttentionCache`).
- :mod:`~nextok.serving.engine`: the scheduler (admission, chunked prefill, preemption), per
  request sampling, stops and cancellation.
"""

from nextok.serving.blocks import BlockAllocator, OutOfBlocks
from nextok.serving.engine import Engine, Output, Request
from nextok.serving.paged_cache import PagedKVCache, PagedStep

__all__ = [
    "BlockAllocator",
    "Engine",
    "OutOfBlocks",
    "Output",
    "PagedKVCache",
    "PagedStep",
    "Request",
]
