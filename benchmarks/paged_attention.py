"""Decode attention over a paged KV pool: the engine's gather + SDPA against FlexAttention
reading the pool in place (``torch.compile``-d ``flex_attention`` with a block mask built from
the block tables), interleaved in one process.

The workload is one decode step of ``--batch`` sequences with lengths drawn from
``--min-len``..``--max-len`` (fixed seed), their 16-token blocks scattered over the pool. The gather
side builds its index and padding mask inside each call; the flex block mask is timed apart (once
per step, shared by the layers). FlexAttention treats the batch as ``--batch`` query
positions of one sequence over the whole pool; a query block of 1 row keeps its work to its own
blocks (the default 128-row query block would attend every row over the union of all rows'
blocks). Prints the outputs' largest difference and each round's time and ratio.

What it showed, and why the engine does not use FlexAttention: per layer, flex ran 1.5-3.1x
faster than this benchmark's gather, which pads every row to the longest. The engine's gather
groups decodes of similar lengths (little padding); with FlexAttention wired into the engine
(``attention=flex``, commit f483686: exact, one compiled kernel for every step) the whole
engine ran 0.83x (16-token blocks) and 0.94x (64-token blocks) of the gather path on the
``benchmarks/serve.py`` workload, its flex kernel taking 1.9 ms a call against 1.4 ms for
gather + SDPA (``--threads 1``, interleaved, load ~2.5). It was reverted; the benchmark stays
as the record and for a GPU, where the comparison may differ.

    python benchmarks/paged_attention.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--min-len", type=int, default=64)
    p.add_argument("--max-len", type=int, default=400)
    p.add_argument("--block", type=int, default=16, help="tokens per KV block")
    p.add_argument("--pool", type=float, default=1.0, help="pool blocks / blocks in use")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, H, KVH, D, BS = args.batch, args.heads, args.kv_heads, args.head_dim, args.block
    lens = torch.randint(args.min_len, args.max_len + 1, (B,))
    n_blocks = (lens + BS - 1) // BS
    NB = int(args.pool * int(n_blocks.sum()))  # the engine's pool has room to spare
    perm = torch.randperm(NB)[: int(n_blocks.sum())]
    tables = list(torch.split(perm, n_blocks.tolist()))
    pool = torch.randn(NB, BS, 2, KVH, D)  # the engine's layout: keys and values side by side
    q = torch.randn(B, H, 1, D)

    def gather_sdpa() -> torch.Tensor:
        width = int(n_blocks.max())
        table = torch.stack([torch.cat([t, t.new_zeros(width - len(t))]) for t in tables])
        kv = pool.index_select(0, table.flatten()).view(B, width * BS, 2, KVH, D)
        keys, values = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        seen = torch.arange(width * BS)[None] < lens[:, None]
        mask = torch.zeros(B, 1, 1, width * BS).masked_fill_(~seen[:, None, None], float("-inf"))
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)

    keys = pool[:, :, 0].reshape(1, NB * BS, KVH, D).transpose(1, 2)  # the pool as one sequence
    values = pool[:, :, 1].reshape(1, NB * BS, KVH, D).transpose(1, 2)
    compiled = torch.compile(flex_attention)

    def block_mask() -> BlockMask:
        """The block tables as FlexAttention's sparse block lists (one query row per decode):
        every block but a row's last is fully visible, the last up to the row's length. Built
        once per step, shared by every layer (as the engine's SDPA masks are)."""
        table = torch.stack([torch.cat([t, t.new_zeros(NB - len(t))]) for t in tables])
        last = torch.cat([table.gather(1, (n_blocks - 1)[:, None]), table[:, 1:]], 1)
        tail = (lens - 1) % BS + 1  # keys the last block holds

        def in_tail(b, h, q_idx, kv_idx):
            return kv_idx % BS < tail[q_idx]

        return BlockMask.from_kv_blocks(
            torch.ones(1, 1, B, dtype=torch.int32),
            last[None, None].to(torch.int32),
            (n_blocks - 1)[None, None].to(torch.int32),
            table[None, None].to(torch.int32),
            BLOCK_SIZE=(1, BS),
            mask_mod=in_tail,
            seq_lengths=(B, NB * BS),
            compute_q_blocks=False,  # inference: no backward pass needs them
        )

    mask = block_mask()

    def flex() -> torch.Tensor:
        out = compiled(q.transpose(0, 2), keys, values, block_mask=mask, enable_gqa=True)
        return out.transpose(0, 2)

    print("$ python benchmarks/paged_attention.py", " ".join(argv or []))
    print(
        f"{B} decodes, lengths {args.min_len}..{args.max_len} ({int(lens.sum())} keys), "
        f"{H}/{KVH} heads x {D}, {BS}-token blocks; torch {torch.__version__}, "
        f"{args.threads} thread(s), load {os.getloadavg()[0]:.1f}"
    )
    t = time.perf_counter()
    diff = (flex() - gather_sdpa()).abs().max().item()
    print(f"compile + first call {time.perf_counter() - t:.1f} s; largest difference {diff:.2e}")

    def timed(fn) -> float:
        t = time.perf_counter()
        for _ in range(args.iters):
            fn()
        return (time.perf_counter() - t) / args.iters

    for r in range(args.rounds):
        a, b, m = timed(gather_sdpa), timed(flex), timed(block_mask)
        print(
            f"round {r + 1}: per layer: gather + SDPA {a * 1e3:.3f} ms, flex {b * 1e3:.3f} ms "
            f"({a / b:.2f}x); per step: the block mask {m * 1e3:.3f} ms (flex wins a step of L "
            f"layers when L x {a * 1e3:.3f} > L x {b * 1e3:.3f} + {m * 1e3:.3f}; "
            f"load {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
