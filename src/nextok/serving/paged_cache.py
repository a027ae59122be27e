"""A paged KV cache: one pool of fixed-size blocks per layer and a block table per sequence.

Memory follows the tokens alive (a sequence holds ``ceil(len / block_size_tokens)`` blocks), a
finished sequence returns its blocks at once, and :meth:`PagedKVCache.truncate` rolls a sequence
back by any number of tokens (speculative decoding's rejected drafts).

Prefix sharing: a full block of prompt tokens, once computed, is registered under the exact
token prefix it ends (the tuple of all tokens from position 0, so a match is never a hash
collision); a later sequence whose prompt starts with that prefix holds the same block instead
of computing it again. A shared block is never written: a sequence writes only past its shared
blocks, and a roll-back into a shared or registered block copies it first. :class:`PagedStep` is one
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
    """The key/value pool ``kv[n_layer, num_blocks, block_size_tokens, 2, n_kv_head, head_dim]``
    (index 0: keys, 1: values) and the block table and length of every sequence (an int id)."""

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
        shape = (config.n_layer, num_blocks, block_size_tokens, 2, config.n_kv_head)
        # keys and values of a token side by side: one scatter and one gather per layer
        self.kv = torch.zeros((*shape, config.head_dim), dtype=dtype, device=device)
        self.tables: dict[int, list[int]] = {}
        self.lengths: dict[int, int] = {}
        self.bytes_per_token = block_bytes(config, 1, dtype)
        # sliding-window layers mask keys older than the window (their blocks are kept)
        self.window = config.sliding_window
        self.sliding = [config.slides(i) for i in range(config.n_layer)]
        self.peak_tokens = 0  # most tokens alive at once (the bytes a perfect cache would hold)
        self._prefixes: dict[tuple[int, ...], int] = {}  # token prefix -> the block ending it
        self._prefix_of: dict[int, tuple[int, ...]] = {}  # registered block -> its prefix
        self._registered: dict[int, int] = {}  # sequence -> its leading blocks registered
        self.shared_blocks = 0  # blocks a sequence took from the registry instead of computing

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
        full = new_len // self.block_size
        tail = table[keep - 1] if keep > full else None
        if tail is not None and self.allocator.refs(tail) == 1 and tail not in self._prefix_of:
            tail = None  # the kept tail block is this sequence's own: written again in place
        if tail is not None and keep == len(table) and not self.allocator.num_free:
            raise OutOfBlocks(f"sequence {seq} needs a block to copy its shared tail block")
        self._release(table[keep:])
        del table[keep:]
        self.lengths[seq] = new_len
        self._registered[seq] = min(self._registered.get(seq, 0), full)
        if tail is not None:  # copy on write: others keep reading the shared block
            copy = self.allocator.allocate()
            self.kv[:, copy] = self.kv[:, tail]
            self._release([tail])
            table[-1] = copy

    def free(self, seq: int) -> None:
        """Return all blocks of ``seq`` (a finished, cancelled or preempted sequence)."""
        self._release(self.tables.pop(seq, []))
        self.lengths.pop(seq, None)
        self._registered.pop(seq, None)

    def _release(self, blocks: Sequence[int]) -> None:
        for block in blocks:
            if self.allocator.free(block):
                self._prefixes.pop(self._prefix_of.pop(block, None), None)

    # ------------------------------------------------------------------ prefix sharing
    @property
    def registered_blocks(self) -> int:
        """Blocks offered for sharing now (each is held by at least one sequence)."""
        return len(self._prefixes)

    def match_prefix(self, tokens: Sequence[int], max_blocks: int) -> list[int]:
        """The registered blocks that hold ``tokens``' leading full blocks (at most
        ``max_blocks``), in order; nothing is taken yet (see :meth:`adopt`)."""
        bs, found = self.block_size, []
        for i in range(min(max_blocks, len(tokens) // bs)):
            block = self._prefixes.get(tuple(tokens[: (i + 1) * bs]))
            if block is None:
                break
            found.append(block)
        return found

    def adopt(self, seq: int, blocks: Sequence[int]) -> None:
        """Start the empty sequence ``seq`` on ``blocks`` from :meth:`match_prefix`."""
        if self.tables.get(seq):
            raise ValueError(f"sequence {seq} already holds blocks")
        for block in blocks:
            self.allocator.share(block)
        self.tables[seq] = list(blocks)
        self.lengths[seq] = len(blocks) * self.block_size
        self._registered[seq] = len(blocks)
        self.shared_blocks += len(blocks)

    def register(self, seq: int, tokens: Sequence[int], upto: int) -> None:
        """Offer the full blocks of ``seq`` within its first ``upto`` computed ``tokens`` (its
        prompt) for sharing; a prefix another block already holds keeps that block."""
        bs, table = self.block_size, self.tables[seq]
        done = self._registered.get(seq, 0)
        last = min(upto, self.lengths[seq]) // bs
        for i in range(done, last):
            key = tuple(tokens[: (i + 1) * bs])
            if key not in self._prefixes and table[i] not in self._prefix_of:
                self._prefixes[key] = table[i]
                self._prefix_of[table[i]] = key
        self._registered[seq] = max(done, last)

    def tokens_alive(self) -> int:
        return sum(self.lengths.values())

    def step(self, chunks: Sequence[tuple[int, int]], logit_index=None) -> PagedStep:
        """The view for one forward: ``chunks`` = (sequence, number of new tokens), in the order
        their tokens are laid end to end. Room must have been made with :meth:`grow`."""
        return PagedStep(self, chunks, logit_index)


# a decode joins a group while its length is within this factor of the group's shortest
GROUP_SLACK = 1.5


class _Group:
    """Queries attended in one SDPA call: one-token decodes of similar lengths (keys padded to
    the longest, masked), chunks of the same length continuing sequences of similar lengths
    (speculative verification, later prefill chunks), or one chunk that starts a prompt alone.
    Index tensors and the additive masks (full attention, and the sliding window's when the
    model has one) are built once per step and shared by every layer."""

    def __init__(self, members, table, starts, counts, offsets, bs, device, window) -> None:
        G, tq = len(members), counts[members[0]]
        ends = [starts[i] + counts[i] for i in members]
        self.size, self.tq = G, tq
        self.s_max = max(ends)
        self.n_blocks = -(-self.s_max // bs)
        self.direct = G == 1 and starts[members[0]] == 0  # a chunk from 0: its own keys suffice
        self.offset = offsets[members[0]]
        self.blocks = None
        if not self.direct:
            self.blocks = table[members, : self.n_blocks].flatten()
        self.mask = self.window_mask = self.tokens = None
        k_pos = torch.arange(self.s_max)
        if tq > 1 and G > 1:  # chunks of tq tokens: causal from each member's start
            tokens = [offsets[i] + j for i in members for j in range(tq)]
            self.tokens = torch.tensor(tokens, device=device)
            first = torch.tensor([starts[i] for i in members])[:, None, None]
            q_pos = first + torch.arange(tq)[None, :, None]  # (G, tq, 1)
            seen = k_pos[None, None, :] <= q_pos
            self.mask = _additive(seen[:, None], device)
            if window is not None:
                self.window_mask = _additive((seen & (k_pos > q_pos - window))[:, None], device)
        elif tq == 1:  # decodes: key j is seen while j < end
            self.tokens = torch.tensor([offsets[i] for i in members], device=device)
            end = torch.tensor(ends)[:, None]
            if min(ends) != self.s_max:
                self.mask = _additive((k_pos[None, :] < end)[:, None, None], device)
            if window is not None:  # ... and j >= end - window
                seen = (k_pos[None, :] < end) & (k_pos[None, :] >= end - window)
                self.window_mask = _additive(seen[:, None, None], device)
        else:  # a prompt chunk: causal from its start (the causal kernel for a first chunk)
            q_pos = torch.arange(starts[members[0]], self.s_max)[:, None]
            if not self.direct:
                self.mask = _additive((k_pos[None, :] <= q_pos)[None, None], device)
            if window is not None:
                seen = (k_pos[None, :] <= q_pos) & (k_pos[None, :] > q_pos - window)
                self.window_mask = _additive(seen[None, None], device)

    def attend(self, q, kv_group, new_kv, sliding: bool = False) -> torch.Tensor:
        """q (N, H, D); kv_group: this group's gathered blocks (G * n_blocks, bs, 2, kvh, D)
        or None (direct); new_kv: the step's new (N, 2, kvh, D); sliding: a sliding-window
        layer. -> (G * tq, H, D)."""
        n_head, head_dim = q.shape[1:]
        if self.direct:
            kv = new_kv[self.offset : self.offset + self.tq][None].to(q.dtype)
        else:
            kv = kv_group.view(self.size, -1, *kv_group.shape[2:])[:, : self.s_max].to(q.dtype)
        kv_heads = kv.shape[-2]
        keys, values = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        if self.tq == 1:  # the query heads sharing a KV head become its query rows
            queries = q.index_select(0, self.tokens).view(self.size, kv_heads, -1, head_dim)
            gqa = False
        elif self.tokens is not None:
            queries = q.index_select(0, self.tokens).view(self.size, self.tq, n_head, head_dim)
            queries = queries.transpose(1, 2)
            gqa = n_head != kv_heads
        else:
            queries = q[self.offset : self.offset + self.tq].transpose(0, 1)[None]
            gqa = n_head != kv_heads
        mask = self.window_mask if sliding else self.mask
        y = F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=mask,
            is_causal=mask is None and self.direct,
            enable_gqa=gqa,
        )
        if self.tq == 1:
            return y.reshape(self.size, n_head, head_dim)
        if self.tokens is not None:
            return y.transpose(1, 2).reshape(self.size * self.tq, n_head, head_dim)
        return y[0].transpose(0, 1)


def _additive(seen: torch.Tensor, device) -> torch.Tensor:
    """A boolean "may attend" mask as the float one SDPA adds (0 / -inf), built once a step."""
    mask = torch.zeros(seen.shape).masked_fill_(~seen, float("-inf"))
    return mask.to(device)


class PagedStep(AttentionCache):
    """One forward over the new tokens of several sequences, laid end to end in a (1, N) batch.

    The slot of every new token comes from the block tables in a few tensor ops. Every layer
    writes the new keys/values into their slots (one scatter), gathers the blocks the step reads
    (one gather) and runs SDPA per group with a mask that lets a query at position p see keys
    0..p of its own sequence only (p-window+1..p in a sliding-window layer): decodes of similar lengths in one padded batch, each prefill
    chunk alone (so a long chunk never pads every decode row to its length; a chunk that starts
    a prompt attends to its own new keys, with no gather).
    """

    def __init__(self, cache: PagedKVCache, chunks: Sequence[tuple[int, int]], logit_index):
        self.cache = cache
        device = cache.kv.device
        bs = cache.block_size
        starts = [cache.lengths[s] for s, _ in chunks]
        counts = [n for _, n in chunks]
        ends = [a + n for a, n in zip(starts, counts)]
        tables = [cache.tables[seq] for seq, _ in chunks]
        for (seq, _), t, end in zip(chunks, tables, ends):
            if len(t) * bs < end:
                raise ValueError(f"sequence {seq} has no room for {end} tokens; call grow first")
        width = -(-max(ends) // bs)
        table = torch.tensor([(t + [0] * width)[:width] for t in tables], dtype=torch.long)
        counts_t = torch.tensor(counts)
        owner = torch.repeat_interleave(torch.arange(len(chunks)), counts_t)
        first = torch.cumsum(counts_t, 0) - counts_t
        n_tokens = int(sum(counts))
        positions = torch.tensor(starts)[owner] + torch.arange(n_tokens) - first[owner]
        slots = table[owner, positions // bs] * bs + positions % bs
        offsets = first.tolist()
        groups = [[i] for i, n in enumerate(counts) if n > 1 and starts[i] == 0]
        rest = (i for i, n in enumerate(counts) if n == 1 or starts[i] > 0)
        for i in sorted(rest, key=lambda i: (counts[i], ends[i])):
            # same-length queries of similar lengths together: little padding to gather
            last = groups[-1] if groups else None
            if (
                last
                and counts[last[0]] == counts[i]
                and (counts[i] == 1 or starts[last[0]] > 0)  # a prompt's first chunk: alone
                and ends[i] <= GROUP_SLACK * ends[last[0]]
            ):
                last.append(i)
            else:
                groups.append([i])
        self._groups = [
            _Group(g, table, starts, counts, offsets, bs, device, cache.window) for g in groups
        ]
        gathered = [g.blocks for g in self._groups if g.blocks is not None]
        self._blocks = torch.cat(gathered).to(device) if gathered else None
        self._tokens_in_order = len(groups) == 1 and groups[0] == sorted(groups[0])
        self.positions = positions.to(device)[None]
        self.logit_index = logit_index
        self._slots = slots.to(device)
        self.n_tokens = n_tokens
        for (seq, _), e in zip(chunks, ends):
            cache.lengths[seq] = e
        cache.peak_tokens = max(cache.peak_tokens, cache.tokens_alive())

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        pool = self.cache.kv[layer]  # (num_blocks, bs, 2, kvh, D)
        new_kv = torch.stack((k[0], v[0]), 0).permute(2, 0, 1, 3).to(pool.dtype)  # (N, 2, kvh, D)
        pool.view(-1, *pool.shape[2:]).index_copy_(0, self._slots, new_kv)
        gathered = None if self._blocks is None else pool.index_select(0, self._blocks)
        q = q[0].transpose(0, 1)  # (N, H, D)
        sliding = self.cache.sliding[layer]
        if self._tokens_in_order:
            return self._groups[0].attend(q, gathered, new_kv, sliding).transpose(0, 1)[None]
        y = torch.empty_like(q)
        at = 0
        for g in self._groups:
            part = None
            if g.blocks is not None:
                part = gathered[at : at + len(g.blocks)]
                at += len(g.blocks)
            out = g.attend(q, part, new_kv, sliding)
            if g.tokens is not None:
                y.index_copy_(0, g.tokens, out)
            else:
                y[g.offset : g.offset + g.tq] = out
        return y.transpose(0, 1)[None]
