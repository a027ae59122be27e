"""Training tokens/s of a Mixture-of-Experts model against the dense model with the same active
parameters (default: presets ``tiny-moe`` vs ``tiny``), interleaved in one process.

    python benchmarks/moe_vs_dense.py                  # the default run's shape: 4 x 128 tokens
    python benchmarks/moe_vs_dense.py --batch 8 --seq 256 --rounds 10

Each round times ``--steps`` optimizer steps (forward + backward + AdamW) of each model in turn,
on the same random batches; the ratio of the medians is printed with both rates.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nextok.model import ModelConfig, Transformer
from nextok.model.moe import aux_loss


def step_time(model: Transformer, opt: torch.optim.Optimizer, x: torch.Tensor, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        _, loss = model(x, x)
        if model.moe_layers():  # the load-balancing and z losses, as training adds them
            loss = loss + aux_loss(model.moe_layers(), 0.01, 0.001).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dense", default="tiny")
    ap.add_argument("--moe", default="tiny-moe")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {}
    for name in (args.dense, args.moe):
        cfg = ModelConfig.from_preset(name, block_size=args.seq)
        model = Transformer(cfg).train()
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True))
    x = torch.randint(0, 4096, (args.batch, args.seq))
    for model, opt in models.values():
        step_time(model, opt, x, 1)  # warm-up
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.rounds):
        for name, (model, opt) in models.items():
            times[name].append(step_time(model, opt, x, args.steps))
    tokens = args.batch * args.seq
    rate = {n: tokens / statistics.median(t) for n, t in times.items()}
    for name, (model, _) in models.items():
        print(
            f"{name:>10}: {rate[name]:8.0f} tokens/s  params {model.num_parameters() / 1e6:.2f}M "
            f"(active {model.num_parameters(active=True) / 1e6:.2f}M)"
        )
    print(f"{args.moe} / {args.dense} tokens/s: {rate[args.moe] / rate[args.dense]:.2f}")


if __name__ == "__main__":
    main()
