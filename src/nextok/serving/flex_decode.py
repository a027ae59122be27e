"""Decode attention read in place from the paged pool with FlexAttention (``attention=flex``).

The gather + SDPA path copies every decode's blocks into a padded batch per layer, which moves
about as many bytes as attention then reads again. Here the pool of one layer is one long key
sequence, each decode one query row, and the block tables become FlexAttention's sparse block
lists: a row attends its full blocks whole and its last block up to its length, reading them
where they lie. ``flex_attention`` is compiled once with dynamic shapes (the number of decodes
changes every step without recompiling); the mask is built once per step and shared by every
layer. Measured on the CPU: ``benchmarks/paged_attention.py`` (one layer) and
``benchmarks/serve.py --attention flex`` (the engine).
"""

from __future__ import annotations

import functools

import torch
from torch.fx.experimental import _config as fx_config
from torch.nn.attention.flex_attention import BlockMask, flex_attention


class FlexDecode:
    """One pool's FlexAttention decode: :meth:`block_mask` per step, :meth:`attend` per layer."""

    def __init__(self, num_blocks: int, block_size: int, device: torch.device | str | None) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        # keys held by each query row's last block; one tensor for the cache's life, so that
        # the compiled kernel (which reads it through the mask) is never recompiled for it
        self.tail = torch.zeros(num_blocks, dtype=torch.long, device=device)
        tail = self.tail

        def in_tail(b, h, q_idx, kv_idx):
            return kv_idx % block_size < tail[q_idx]

        self._in_tail = in_tail

    def block_mask(self, tables: torch.Tensor, ends: list[int]) -> BlockMask:
        """``tables`` (G, width) the decodes' block tables (padded), ``ends`` their lengths with
        the new token. Call once per step: the rows' tails live in one shared buffer."""
        G, bs, device = len(ends), self.block_size, self.tail.device
        end = torch.tensor(ends)
        n_blocks = (end + bs - 1) // bs
        self.tail[:G] = ((end - 1) % bs + 1).to(device)
        full = torch.zeros(G, self.num_blocks, dtype=torch.int32)  # the mask spans the pool
        cols = torch.arange(tables.shape[1])[None]
        width = tables.shape[1]
        full[:, :width] = torch.where(cols < (n_blocks - 1)[:, None], tables, 0).to(torch.int32)
        last = torch.zeros(G, self.num_blocks, dtype=torch.int32)
        last[:, 0] = tables.gather(1, (n_blocks - 1)[:, None])[:, 0].to(torch.int32)
        return BlockMask.from_kv_blocks(
            torch.ones(1, 1, G, dtype=torch.int32, device=device),
            last[None, None].to(device),
            (n_blocks - 1)[None, None].to(torch.int32).to(device),
            full[None, None].to(device),
            BLOCK_SIZE=(1, bs),
            mask_mod=self._in_tail,
            seq_lengths=(G, self.num_blocks * bs),
            compute_q_blocks=False,  # inference: no backward pass needs them
        )

    def attend(self, queries: torch.Tensor, pool: torch.Tensor, mask: BlockMask) -> torch.Tensor:
        """``queries`` (G, n_head, D), ``pool`` one layer's (num_blocks, bs, 2, kvh, D) -> (G,
        n_head, D)."""
        n, bs, _, kv_heads, head_dim = pool.shape
        keys = pool[:, :, 0].reshape(1, n * bs, kv_heads, head_dim).transpose(1, 2)  # views
        values = pool[:, :, 1].reshape(1, n * bs, kv_heads, head_dim).transpose(1, 2)
        q = queries.transpose(0, 1)[None]  # (1, n_head, G, D): each decode one query row
        # Every layer's view starts at another offset of the pool; without duck sizing that
        # offset stays one symbol, so one graph serves every layer (with it, an offset equal to
        # some size by chance became a guard and each layer recompiled).
        with fx_config.patch(use_duck_shape=False):
            out = _compiled()(q, keys, values, block_mask=mask, enable_gqa=q.shape[1] != kv_heads)
        return out[0].transpose(0, 1)


@functools.cache
def _compiled():
    """One compiled ``flex_attention`` for the process: a new cache (a new engine) reuses its
    graphs instead of compiling again."""
    return torch.compile(flex_attention, dynamic=True)
