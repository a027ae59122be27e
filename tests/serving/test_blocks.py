"""The block allocator and the paged cache's bookkeeping (grow, roll back, free)."""

from __future__ import annotations

import pytest
import torch

from nextok.model import ModelConfig
from nextok.serving import BlockAllocator, OutOfBlocks, PagedKVCache
from nextok.serving.paged_cache import block_bytes, blocks_for_mb

CFG = ModelConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32)


def test_allocator_hands_out_each_block_once_and_reuses_freed_ones():
    a = BlockAllocator(3)
    got = [a.allocate() for _ in range(3)]
    assert sorted(got) == [0, 1, 2] and a.num_free == 0 and a.peak_used == 3
    with pytest.raises(OutOfBlocks, match="all 3 KV blocks"):
        a.allocate()
    a.free(got[1])
    assert a.allocate() == got[1]
    with pytest.raises(ValueError, match="not allocated"):
        a.free(7)
    a.free(got[0])
    with pytest.raises(ValueError, match="not allocated"):
        a.free(got[0])  # a double free would give one block to two sequences


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_allocator_refuses_a_bad_size(bad):
    with pytest.raises(ValueError, match="num_blocks must be a positive integer"):
        BlockAllocator(bad)


def test_cache_memory_follows_tokens_and_rolls_back():
    cache = PagedKVCache(CFG, num_blocks=8, block_size_tokens=4)
    cache.grow(0, 9)  # 9 tokens -> 3 blocks
    assert len(cache.tables[0]) == 3 and cache.allocator.num_free == 5
    cache.step([(0, 9)])  # positions 0..8 written
    assert cache.lengths[0] == 9
    cache.truncate(0, 4)  # roll back 5 tokens: the two trailing blocks are free again
    assert len(cache.tables[0]) == 1 and cache.lengths[0] == 4 and cache.allocator.num_free == 7
    with pytest.raises(ValueError, match="cannot truncate"):
        cache.truncate(0, 5)
    with pytest.raises(OutOfBlocks):
        cache.grow(1, 33)  # 9 blocks > 7 free: nothing is taken
    assert cache.allocator.num_free == 7 and 1 not in cache.tables
    cache.free(0)
    assert cache.allocator.num_free == 8 and cache.tokens_alive() == 0


def test_pool_size_from_megabytes():
    per_block = block_bytes(CFG, 16, torch.float32)
    assert per_block == 2 * 2 * 16 * 2 * 8 * 4  # k+v, layers, tokens, kv heads, head_dim, fp32
    assert blocks_for_mb(CFG, 1, 16, torch.float32) == 2**20 // per_block
