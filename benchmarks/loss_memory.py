"""Memory and time of the training loss: nextok's lean LM loss vs the plain full-logits path.

For each loss implementation (``model.loss_impl``: plain, chunked; liger on CUDA when installed)
one forward + backward of a whole Transformer is measured for its peak memory growth (over the
memory held before the forward: weights and inputs), expressed in units of ONE fp32 logits
tensor (batch x seq x vocab x 4 bytes), and for its step time (median of interleaved rounds).

How peak memory is measured: on CUDA, ``torch.cuda.max_memory_allocated``; on CPU, the PyTorch
profiler's allocator events (``profile_memory=True``: every CPU tensor allocation and free, in
time order), summed into a running total whose maximum is the peak. Timing runs without the
profiler.

    python benchmarks/loss_memory.py                  # vocab 128,256, 2 x 1,024 tokens
    python benchmarks/loss_memory.py --device cuda --dtype bfloat16 --batch 8 --seq 2048
"""

from __future__ import annotations

import argparse
import gc
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch

from nextok.model import ModelConfig, Transformer
from nextok.model.loss import liger_available


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak growth of live CPU tensor memory while ``fn`` runs (profiler allocation events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    current = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:
            current += e.nbytes()
            peak = max(peak, current)
    return peak


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory growth of ``fn`` on ``device`` over what was allocated before it."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    return cpu_peak_bytes(fn)


def build(args: argparse.Namespace, impl: str, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=args.vocab,
        block_size=args.seq,
        n_layer=args.layers,
        n_head=args.heads,
        n_kv_head=args.kv_heads,
        d_model=args.d_model,
    )
    model = Transformer(cfg).to(device)
    model.loss_impl = impl
    model.loss_chunk_rows = args.chunk_rows
    x = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
    dtype = getattr(torch, args.dtype)
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        with amp:
            _, loss = model(x, x)
        loss.backward()
        for p in model.parameters():
            p.grad = None

    return step


def timed(step: Callable[[], None], n: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / n


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """{impl: {"peak_ratio", "seconds"}} with ``plain`` first (the reference)."""
    device = torch.device(args.device)
    impls = ["plain", "chunked"] + (
        ["liger"] if device.type == "cuda" and liger_available() else []
    )
    logits_bytes = args.batch * args.seq * args.vocab * 4
    out: dict[str, dict[str, float]] = {}
    steps = {}
    for impl in impls:
        step = build(args, impl, device)
        step()  # warm-up (allocator, lazy init)
        out[impl] = {"peak_ratio": peak_bytes(step, device) / logits_bytes}
        steps[impl] = step
    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(args.rounds):  # interleaved so machine noise hits every implementation alike
        for impl, step in steps.items():
            times[impl].append(timed(step, args.steps, device))
    for impl in impls:
        out[impl]["seconds"] = statistics.median(times[impl])
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="autocast dtype (weights stay fp32)",
    )
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="tokens per chunk of the chunked loss (default: nextok's)",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed steps per round")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    res = measure(args)
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"cpu ({torch.get_num_threads()} threads)")
    )
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"device: {name}; torch {torch.__version__}; autocast {args.dtype}")
    print(
        f"shape: vocab {args.vocab:,}, {args.batch} x {args.seq:,} tokens, {args.layers} layers, "
        f"d_model {args.d_model}; one fp32 logits tensor = "
        f"{args.batch * args.seq * args.vocab * 4 / 2**20:,.0f} MiB"
    )
    ref = res["plain"]["seconds"]
    print(
        "| loss | peak memory of forward + backward / one fp32 logits tensor | step time | "
        "time vs plain |"
    )
    print("|---|---|---|---|")
    for impl, r in res.items():
        print(
            f"| {impl} | {r['peak_ratio']:.2f}x | {r['seconds'] * 1e3:.0f} ms | "
            f"{r['seconds'] / ref:.3f} |"
        )


if __name__ == "__main__":
    main()
