"""Decode speed with the KV cache vs without it (re-running the whole sequence every step).

Both modes run the real generation loop (``nextok.generation.stream``, greedy) on the same
model, at several context (prompt) lengths, in one process. The per-token time is the median
interval between consecutive generated tokens, so the prefill is excluded (it is reported on its
own). With the cache the per-token cost should stay nearly flat as the context grows; without
it, it grows with the context.

    python benchmarks/decode.py                         # tiny-like model, contexts 64 256 1024
    python benchmarks/decode.py --device cuda --dtype bf16 --preset llama-small
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch

from nextok.generation import SamplingParams, stream
from nextok.model import ModelConfig, Transformer


def time_decode(
    model, context: int, new_tokens: int, use_cache: bool, device
) -> tuple[float, float]:
    """(prefill seconds, median seconds per decoded token) for one greedy run.

    The median of the step intervals (rather than their mean) ignores the odd step stalled by
    another process on a shared machine.
    """
    g = torch.Generator().manual_seed(context)
    prompt = torch.randint(0, model.config.vocab_size, (context,), generator=g).tolist()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    stamps = []
    for _ in stream(
        model, [prompt], new_tokens, SamplingParams(temperature=0), use_cache=use_cache
    ):
        sync()
        stamps.append(time.perf_counter())
    return stamps[0] - t0, statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--preset", default="tiny", help="ModelConfig preset (block_size is raised to fit)"
    )
    p.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="runs per cell; the fastest is reported")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)

    print(
        "command: python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    need = max(args.contexts) + args.new_tokens
    base = ModelConfig.from_preset(args.preset)
    cfg = ModelConfig.from_preset(args.preset, block_size=max(base.block_size, need))
    torch.manual_seed(0)
    model = Transformer(cfg).to(device=device, dtype=dtype).eval()
    print(
        f"model: preset {args.preset}, {model.num_parameters() / 1e6:.2f}M params, "
        f"{cfg.n_layer} layers, d_model {cfg.d_model}, heads {cfg.n_head}/{cfg.n_kv_head} (q/kv), "
        f"block {cfg.block_size}; {device.type} {args.dtype}, {torch.get_num_threads()} threads; "
        f"{args.new_tokens} new tokens, best of {args.repeats}"
    )
    time_decode(model, 16, 4, True, device)  # warm-up (allocator, kernels)
    time_decode(model, 16, 4, False, device)

    # Interleave the cells and keep each cell's best run: on a shared machine, load spikes then
    # hit all context lengths alike instead of skewing one of them.
    runs: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for ctx in args.contexts:
            for use_cache in (True, False):
                runs.setdefault((ctx, use_cache), []).append(
                    time_decode(model, ctx, args.new_tokens, use_cache, device)
                )
    best = {k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in runs.items()}
    rows = [(ctx, {u: best[ctx, u] for u in (True, False)}) for ctx in args.contexts]

    print()
    print(
        "| context | prefill ms | cached ms/token | cached tokens/s | no-cache ms/token | no-cache tokens/s | cache speed-up |"
    )
    print(
        "|--------:|-----------:|----------------:|----------------:|------------------:|------------------:|---------------:|"
    )
    for ctx, cell in rows:
        (pre, c), (_, n) = cell[True], cell[False]
        print(
            f"| {ctx} | {pre * 1e3:.1f} | {c * 1e3:.2f} | {1 / c:.0f} | {n * 1e3:.2f} | {1 / n:.0f} | {n / c:.1f}x |"
        )
    first, last = rows[0][1], rows[-1][1]
    print(
        f"\ncontext {rows[0][0]} -> {rows[-1][0]}: cached per-token time x"
        f"{last[True][1] / first[True][1]:.2f}, no-cache per-token time x"
        f"{last[False][1] / first[False][1]:.2f}"
    )


if __name__ == "__main__":
    main()
