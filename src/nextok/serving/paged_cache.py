"""A paged KV cache: one pool of fixed-size blocks per layer and a block table per sequence.

Memory follows the tokens alive (a sequence holds ``ceil(len / block_size_tokens)`` blocks), a
finished sequence returns its blocks at once, and :meth:`PagedKVCache.truncate` rolls a sequence
back by any number of tokens (speculative decoding's rejected drafts). :class:`PagedStep` is one
forward's view: the new tokens of several sequences end to end, attending over their block
tables with a plain gather + SDPA (the same code on CPU and GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from nextok.model import AttentionCache, ModelConfig
from nextok.serving.blocks import BlockAllocator, OutOfBlocks


def blocks_for_mb(config: ModelConfig, mb: float, block_size_tokens: int, dtype) -> int:
    """How many blocks of keys + values fit in ``mb`` MiB."""
    per_block = block_bytes(config, block_size_tokens, dtype)
    return int(mb * 2**20 // per_block)


def block_bytes(config: ModelConfig, block_size_tokens: int, dtype) -> int:
    """Bytes of one block in every layer (keys and values)."""
    elem = torch.empty(0, dtype=dtype).element_size()
    return 2 * config.n_layer * block_size_tokens * config.n_kv_head * config.head_dim * elem


class PagedKVCache:
    """Key/value pools ``[n_layer, num_blocks, block_size_tokens, n_kv_head, head_dim]`` and the
    block table and length of every sequence (keyed by an int id)."""

    def __init__(
        self,
        config: ModelConfig,
        num_blocks: int,
        block_size_tokens: int = 16,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(block_size_tokens, int) or block_size_tokens < 1:
            raise ValueError(
                f"block_size_tokens must be a positive integer, got {block_size_tokens!r}"
            )
        self.allocator = BlockAllocator(num_blocks)
        self.block_size = block_size_tokens
        shape = (config.n_layer, num_blocks, block_size_tokens, config.n_kv_head, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.tables: dict[int, list[int]] = {}
        self.lengths: dict[int, int] = {}
        self.bytes_per_token = block_bytes(config, 1, dtype)
        self.peak_tokens = 0  # most tokens alive at once (the bytes a perfect cache would hold)

    @property
    def num_blocks(self) -> int:
        return self.allocator.num_blocks

    def blocks_needed(self, seq: int, new_len: int) -> int:
        """Blocks to add so that ``seq`` can hold ``new_len`` tokens."""
        have = len(self.tables.get(seq, ()))
        return max(0, math.ceil(new_len / self.block_size) - have)

    def can_grow(self, seq: int, new_len: int) -> bool:
        return self.blocks_needed(seq, new_len) <= self.allocator.num_free

    def grow(self, seq: int, new_len: int) -> None:
        """Make room for ``new_len`` tokens (raises :class:`OutOfBlocks`, changing nothing)."""
        need = self.blocks_needed(seq, new_len)
        if need > self.allocator.num_free:
            raise OutOfBlocks(f"sequence {seq} needs {need} more blocks")
        table = self.tables.setdefault(seq, [])
        self.lengths.setdefault(seq, 0)
        table.extend(self.allocator.allocate() for _ in range(need))

    def truncate(self, seq: int, new_len: int) -> None:
        """Keep the first ``new_len`` tokens of ``seq`` and free the blocks past them."""
        if not 0 <= new_len <= self.lengths.get(seq, 0):
            raise ValueError(f"cannot truncate sequence {seq} to {new_len} tokens")
        table = self.tables[seq]
        keep = math.ceil(new_len / self.block_size)
        for block in table[keep:]:
            self.allocator.free(block)
        del table[keep:]
        self.lengths[seq] = new_len

    def free(self, seq: int) -> None:
        """Return all blocks of ``seq`` (a finished, cancelled or preempted sequence)."""
        for block in self.tables.pop(seq, []):
            self.allocator.free(block)
        self.lengths.pop(seq, None)

    def tokens_alive(self) -> int:
        return sum(self.lengths.values())

    def step(self, chunks: Sequence[tuple[int, int]], logit_index=None) -> PagedStep:
        """The view for one forward: ``chunks`` = (sequence, number of new tokens), in the order
        their tokens are laid end to end. Room must have been made with :meth:`grow`."""
        return PagedStep(self, chunks, logit_index)


# a decode joins a group while its length is within this factor of the group's shortest
GROUP_SLACK = 1.5


class _Group:
    """Sequences whose queries are attended in one SDPA call: all the one-token decodes
    together (keys padded to the longest), or one prefill chunk alone (no padding)."""

    def __init__(self, tables, starts, counts, offsets, block_size, device) -> None:
        G, tq = len(tables), max(counts)
        ends = [a + n for a, n in zip(starts, counts)]
        self.s_max = max(ends)
        n_blocks = math.ceil(self.s_max / block_size)
        table = [(t[:n_blocks] + [0] * n_blocks)[:n_blocks] for t in tables]
        q_index = [list(range(o, o + n)) + [0] * (tq - n) for n, o in zip(counts, offsets)]
        q_pos = [list(range(a, a + n)) + [-1] * (tq - n) for a, n in zip(starts, counts)]
        table = torch.tensor(table, dtype=torch.long)
        q_index = torch.tensor(q_index, dtype=torch.long)
        q_pos = torch.tensor(q_pos, dtype=torch.long)
        self.table = table.flatten().to(device)
        self.is_causal = G == 1 and starts[0] == 0 and tq > 1  # a whole prompt: causal kernel
        self.mask = None
        if not self.is_causal:
            k_pos = torch.arange(self.s_max)
            # a padding query (q_pos -1) sees key 0 so that no row is all -inf (NaN); dropped after
            mask = (k_pos[None, None, :] <= q_pos[:, :, None]) | (k_pos[None, None, :] == 0)
            self.mask = mask[:, None].to(device)
        valid = (q_pos >= 0).flatten()
        self.q_index = q_index.to(device)
        self.valid = torch.nonzero(valid).flatten().to(device)  # rows of (G * tq) that are real
        self.rows = q_index.flatten()[valid].to(device)  # their places among the N new tokens

    def attend(self, q, k_pool, v_pool) -> torch.Tensor:
        """q (N, H, D) -> the outputs of this group's real queries, (n_valid, H, D)."""
        G, tq = self.q_index.shape
        kv_heads, head_dim = k_pool.shape[-2:]
        n_head = q.shape[1]
        keys = k_pool.index_select(0, self.table).view(G, -1, kv_heads, head_dim)
        values = v_pool.index_select(0, self.table).view(G, -1, kv_heads, head_dim)
        keys = keys[:, : self.s_max].transpose(1, 2).to(q.dtype)  # (G, kv_heads, S, D)
        values = values[:, : self.s_max].transpose(1, 2).to(q.dtype)
        queries = q[self.q_index].transpose(1, 2)  # (G, H, Tq, D)
        if tq == 1:  # decodes: the query heads sharing a KV head become its query rows
            queries = queries.reshape(G, kv_heads, n_head // kv_heads, head_dim)
        y = F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=self.mask,
            is_causal=self.is_causal,
            enable_gqa=tq > 1 and n_head != kv_heads,
        )
        return (
            y.reshape(G, n_head, tq, head_dim)
            .transpose(1, 2)
            .reshape(-1, n_head, head_dim)[self.valid]
        )


class PagedStep(AttentionCache):
    """One forward over the new tokens of several sequences, laid end to end in a (1, N) batch.

    Every layer writes the new keys/values into their blocks, gathers each sequence's keys
    through its block table and runs SDPA with a mask that lets a query at position p see keys
    0..p of its own sequence only: decodes of similar lengths in one padded batch, each prefill
    chunk alone (so a long chunk never pads every decode row to its length).
    """

    def __init__(self, cache: PagedKVCache, chunks: Sequence[tuple[int, int]], logit_index):
        self.cache = cache
        device = cache.k.device
        bs = cache.block_size
        starts = [cache.lengths[s] for s, _ in chunks]
        counts = [n for _, n in chunks]
        ends = [a + n for a, n in zip(starts, counts)]
        for (seq, _), end in zip(chunks, ends):
            if len(cache.tables[seq]) * bs < end:
                raise ValueError(f"sequence {seq} has no room for {end} tokens; call grow first")
        positions = [p for a, e in zip(starts, ends) for p in range(a, e)]
        slots = [
            cache.tables[seq][p // bs] * bs + p % bs
            for (seq, _), a, e in zip(chunks, starts, ends)
            for p in range(a, e)
        ]
        offsets = [0]
        for n in counts[:-1]:
            offsets.append(offsets[-1] + n)
        tables = [cache.tables[seq] for seq, _ in chunks]
        decodes = sorted((i for i, n in enumerate(counts) if n == 1), key=lambda i: ends[i])
        groups = [[i] for i, n in enumerate(counts) if n > 1]
        for i in decodes:  # decodes of similar lengths together: little padding to gather
            if (
                groups
                and counts[groups[-1][0]] == 1
                and ends[i] <= GROUP_SLACK * ends[groups[-1][0]]
            ):
                groups[-1].append(i)
            else:
                groups.append([i])
        self._groups = [
            _Group(
                [tables[i] for i in g],
                [starts[i] for i in g],
                [counts[i] for i in g],
                [offsets[i] for i in g],
                bs,
                device,
            )
            for g in groups
        ]
        self._in_order = groups[0] == sorted(groups[0])  # one group, rows in token order
        self.positions = torch.tensor(positions, dtype=torch.long, device=device)[None]
        self.logit_index = logit_index
        self._slots = torch.tensor(slots, dtype=torch.long, device=device)
        self.n_tokens = len(positions)
        for (seq, _), e in zip(chunks, ends):
            cache.lengths[seq] = e
        cache.peak_tokens = max(cache.peak_tokens, cache.tokens_alive())

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        c = self.cache
        kv_heads, head_dim = c.k.shape[-2:]
        k_pool, v_pool = c.k[layer], c.v[layer]
        k_pool.view(-1, kv_heads, head_dim)[self._slots] = k[0].transpose(0, 1).to(c.k.dtype)
        v_pool.view(-1, kv_heads, head_dim)[self._slots] = v[0].transpose(0, 1).to(c.v.dtype)
        q = q[0].transpose(0, 1)  # (N, H, D)
        if len(self._groups) == 1 and self._in_order:
            y = self._groups[0].attend(q, k_pool, v_pool)
        else:
            y = torch.empty_like(q)
            for g in self._groups:
                y[g.rows] = g.attend(q, k_pool, v_pool)
        return y.transpose(0, 1)[None]
