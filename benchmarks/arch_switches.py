"""Training-step time (forward + backward + AdamW) of each architecture switch vs the plain model.

The default run's shape (preset ``tiny`` at block 128, batch 4, vocab 4096), one model per
switch, measured interleaved round by round (plain, switch 1, switch 2, ..., plain, ...) so machine
noise hits all alike; prints each switch's median step time and its ratio to the plain model.
``doc_mask`` gets document ids of blocks with a separator every ``--doc-len`` tokens.

    python benchmarks/arch_switches.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import torch

from nextok.model import ModelConfig, Transformer, document_ids

SWITCHES = {
    "plain": {},
    "zero_init_proj": dict(zero_init_proj=True),
    "logit_softcap=15": dict(logit_softcap=15.0),
    "value_residual": dict(value_residual=True),
    "unet_skips": dict(unet_skips=True),
    "doc_mask": dict(doc_mask=True),
}
SEP = 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--switches", nargs="+", default=list(SWITCHES)[1:], choices=list(SWITCHES))
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--doc-len", type=int, default=64, help="tokens per document (doc_mask)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command: python " + shlex.join([sys.argv[0], *(argv or sys.argv[1:])]))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    torch.manual_seed(0)
    x = torch.randint(1, args.vocab, (args.batch, args.seq))
    x[:, args.doc_len :: args.doc_len] = SEP
    y = torch.randint(0, args.vocab, (args.batch, args.seq))
    names = ["plain", *args.switches]
    runs = {}
    for name in names:
        cfg = ModelConfig.from_preset(
            "tiny", vocab_size=args.vocab, block_size=args.seq, **SWITCHES[name]
        )
        model = Transformer(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
        docs = document_ids(x, SEP) if cfg.doc_mask else None
        runs[name] = (model, opt, docs)

    def step(name: str) -> None:
        model, opt, docs = runs[name]
        _, loss = model(x, y, doc_ids=docs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for name in names:
        for _ in range(args.warmup):
            step(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t0) / args.steps)
    base = statistics.median(times["plain"])
    print(f"\n| switch | ms/step (median of {args.rounds}) | ratio vs plain |")
    print("|---|---|---|")
    for name in names:
        med = statistics.median(times[name])
        print(f"| {name} | {1e3 * med:.2f} | {med / base:.3f} |")


if __name__ == "__main__":
    main()
