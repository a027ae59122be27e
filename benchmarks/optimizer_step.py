"""Optimizer step time: ``optim=muon`` (Muon + AdamW) against ``optim=adamw``, interleaved.

Muon orthogonalises every hidden matrix's momentum with 5 Newton-Schulz iterations (three
matmuls each), so its step costs more than AdamW's elementwise update; how much depends on the
iteration's dtype (``optim.ns_dtype``): bf16 suits GPU tensor cores, fp32 suits CPUs without bf16
matrix units. Same-shape matrices (one per layer) are iterated as one stacked batch; the row
"one matrix at a time" times the unbatched iteration (the same result bit for bit), so the
batching's gain is a ratio measured in the same rounds. Each round times ``--steps`` steps of every optimizer in turn on the same model and
gradients; the medians over rounds are printed with their ratio to AdamW's step and to one
forward + backward of the same batch (measured in the same rounds).

    python benchmarks/optimizer_step.py                      # tiny model, the default run's batch
    python benchmarks/optimizer_step.py --threads 1
    python benchmarks/optimizer_step.py --device cuda --preset llama-1b --batch 4 --seq 2048
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch

from nextok.model import ModelConfig, Transformer
from nextok.optim import AdamWConfig, MuonConfig, build_adamw, build_muon


def timed(fn: Callable[[], object], steps: int, device: torch.device) -> float:
    """Mean seconds of ``fn`` over ``steps`` calls (synchronising CUDA before and after)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


FP32, BF16 = "Muon + AdamW, Newton-Schulz fp32", "Muon + AdamW, Newton-Schulz bf16"
FP32_ALONE = "Muon + AdamW, Newton-Schulz fp32, one matrix at a time"


def one_matrix_at_a_time(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """``opt`` (a Muon + AdamW) with its Newton-Schulz batching off."""
    opt._inner[0].ns_batch_elements = 0
    return opt


def measure(
    cfg: ModelConfig,
    batch: int,
    rounds: int,
    steps: int,
    device: torch.device,
    amp: torch.dtype | None = None,
) -> dict[str, float]:
    """Median seconds of one forward + backward (batch x ``cfg.block_size`` tokens, under
    ``amp`` autocast when given, as training runs it) and of one step of AdamW and of Muon + AdamW
    in both Newton-Schulz dtypes (fp32 weights; fp32 also unbatched), interleaved per round."""
    torch.manual_seed(0)
    with torch.device(device):  # initialised on the device: seconds, not minutes, for 1B
        model = Transformer(cfg)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device)

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = model(x, x)[1]
        loss.backward()

    fwd_bwd()  # every optimizer steps on these gradients
    optimizers = {
        "AdamW": build_adamw(model, AdamWConfig()),
        FP32: build_muon(model, MuonConfig(ns_dtype="float32")),
        FP32_ALONE: one_matrix_at_a_time(build_muon(model, MuonConfig(ns_dtype="float32"))),
        BF16: build_muon(model, MuonConfig(ns_dtype="bfloat16")),
    }
    grads = {n: q.grad.clone() for n, q in model.named_parameters()}
    for opt in optimizers.values():
        opt.step()  # warm-up: state allocation
    times: dict[str, list[float]] = {name: [] for name in ["fwd + bwd", *optimizers]}
    for _ in range(rounds):
        times["fwd + bwd"].append(timed(fwd_bwd, steps, device))
        for n, q in model.named_parameters():
            q.grad = grads[n].clone()
        for name, opt in optimizers.items():
            times[name].append(timed(opt.step, steps, device))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="steps per optimizer per round")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    print(
        "command: python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = ModelConfig.from_preset(args.preset, block_size=args.seq)
    med = measure(cfg, args.batch, args.rounds, args.steps, device)
    with torch.device("meta"):
        model = Transformer(cfg)
    print(
        f"model: preset {args.preset}, {model.num_parameters() / 1e6:.2f}M params; batch "
        f"{args.batch} x {args.seq}; {device.type}, {torch.get_num_threads()} threads; "
        f"median of {args.rounds} rounds x {args.steps} steps"
    )
    print("| step | ms | / AdamW step | / fwd + bwd |")
    print("|---|---|---|---|")
    for name, t in med.items():
        print(f"| {name} | {t * 1e3:.2f} | {t / med['AdamW']:.2f} | {t / med['fwd + bwd']:.2f} |")


if __name__ == "__main__":
    main()
