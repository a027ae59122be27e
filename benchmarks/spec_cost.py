"""Why a draft model speeds greedy decoding up or not: its cost per token, and the acceptance needed.

One speculative round with k proposals runs k cached draft steps and one (k+1)-token target
forward, and emits E = 1 + (accepted tokens) tokens. Against plain decoding (one target step
per token) its speedup is E / (round cost in target steps). Counting forwards only, the round
cost is k c + v_k, with c = draft step / target step and v_k = (k+1)-token verify forward /
target step; the measured round cost (E / measured speedup) adds the loop's own work per round
(verification, cache roll-back, Python). If each proposed token were accepted independently with
probability a, E = (1 - a^(k+1)) / (1 - a) (Leviathan et al., eq. 1): the table gives the a
that would reach ``--goal`` at the measured round cost.

This script measures c and v_k on a trained target/draft pair (cached forwards at the prompts'
context length, medians of interleaved rounds), then for each k the acceptance, E and tokens/s
of ``DraftModel`` on held-out prompts against plain decoding (interleaved, same tokens checked).

    python benchmarks/spec_cost.py --work /tmp/specbench --ks 1 2 3 4 6

``--work`` is a ``benchmarks/speculative.py`` work folder (its ``{target,draft}/checkpoints``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from speculative import GREEDY, held_out  # benchmarks/ is on sys.path when run as a script

from nextok.checkpoint import load_checkpoint
from nextok.generation import DraftModel, generate


def tokens_per_round(a: float, k: int) -> float:
    """Expected tokens one round emits with k proposals each accepted with probability a."""
    return k + 1.0 if a >= 1 else (1 - a ** (k + 1)) / (1 - a)


def acceptance_needed(goal: float, k: int, cost: float) -> float | None:
    """The a at which tokens_per_round(a, k) / cost reaches ``goal`` (None: not even a = 1)."""
    if (k + 1) / cost < goal:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens_per_round(mid, k) / cost < goal else (lo, mid)
    return hi


class CountingDraft(DraftModel):
    """A :class:`DraftModel` that also counts its rounds (``stats["rounds"]``)."""

    def propose(self, *args, **kwargs):
        self.stats["rounds"] = self.stats.get("rounds", 0) + 1
        return super().propose(*args, **kwargs)


@torch.inference_mode()
def forward_seconds(model, prompt: list[int], width: int, rounds: int) -> float:
    """Median time of a cached ``width``-token forward after ``prompt`` (rolled back each time)."""
    cache = model.make_kv_cache(1, max_seq_len=len(prompt) + width)
    model(torch.tensor([prompt]), kv_cache=cache)
    chunk = torch.tensor([prompt[-width:]])
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        model(chunk, kv_cache=cache)
        times.append(time.perf_counter() - t)
        cache.truncate(len(prompt))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a benchmarks/speculative.py folder")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--prompt-tokens", type=int, default=320)
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30, help="timed forwards per cost figure")
    p.add_argument("--goal", type=float, default=1.8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print("$ python benchmarks/spec_cost.py", shlex.join(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    print(f"load before: {os.getloadavg()[0]:.1f}; torch threads {args.threads}", flush=True)
    loaded = load_checkpoint(args.work / "target" / "checkpoints" / "last.ckpt")
    target, tok = loaded.model.eval(), loaded.tokenizer
    draft = load_checkpoint(args.work / "draft" / "checkpoints" / "last.ckpt").model.eval()
    rows = held_out(tok, args.prompts, args.prompt_tokens + args.new_tokens)
    prompts = [r[: args.prompt_tokens] for r in rows]

    widths = sorted({1, *(k + 1 for k in args.ks)})
    cost: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):  # interleaved: load spikes hit every figure alike
        for w in widths:
            cost.setdefault(("target", w), []).append(
                forward_seconds(target, prompts[0], w, args.rounds)
            )
        cost.setdefault(("draft", 1), []).append(forward_seconds(draft, prompts[0], 1, args.rounds))
    step = min(cost["target", 1])
    c = min(cost["draft", 1]) / step
    print(
        f"\ncached forwards at a {args.prompt_tokens}-token context, best of {args.repeats} "
        f"medians of {args.rounds}: target step {step * 1e3:.2f} ms, draft step "
        f"{min(cost['draft', 1]) * 1e3:.2f} ms (c = {c:.2f}); verify v_k: "
        + ", ".join(f"k={w - 1} {min(cost['target', w]) / step:.2f}" for w in widths if w > 1)
    )

    n = args.new_tokens
    seconds: dict[str, float] = {}
    stats: dict[int, list[int]] = {k: [0, 0, 0] for k in args.ks}
    proposers = {k: CountingDraft(draft, k, 0.0) for k in args.ks}  # k guesses every round
    best: dict[str, float] = {}
    generate(target, [prompts[0][:16]], 4, GREEDY, proposer=proposers[args.ks[0]])  # warm-up
    for r in range(args.repeats):
        seconds = {}
        for prompt in prompts:
            t = time.perf_counter()
            plain = generate(target, [prompt], n, GREEDY)[0]
            seconds["plain"] = seconds.get("plain", 0.0) + time.perf_counter() - t
            for k, proposer in proposers.items():
                proposer.stats.update(proposed=0, accepted=0, rounds=0)
                t = time.perf_counter()
                out = generate(target, [prompt], n, GREEDY, proposer=proposer)[0]
                seconds[f"k={k}"] = seconds.get(f"k={k}", 0.0) + time.perf_counter() - t
                assert out == plain, f"k={k}: speculative output differs from plain"
                if r == 0:
                    stats[k][0] += proposer.stats["proposed"]
                    stats[k][1] += proposer.stats["accepted"]
                    stats[k][2] += proposer.stats["rounds"]
        best = {name: min(s, best.get(name, s)) for name, s in seconds.items()}
        print(f"round {r + 1}: load {os.getloadavg()[0]:.1f}", flush=True)

    total = n * len(prompts)
    print(
        f"\n{len(prompts)} held-out prompts of {args.prompt_tokens} tokens, {n} new tokens each, "
        f"greedy, batch 1 (same tokens as plain: checked); plain {total / best['plain']:.1f} tokens/s"
    )
    print(
        "| k | accepted / proposed | tokens per round E | tokens/s | x vs plain | round cost: "
        "forwards k c + v_k | round cost: measured E / x | E for "
        f"{args.goal}x | a for {args.goal}x |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in args.ks:
        proposed, accepted, rounds = stats[k]
        e = 1 + accepted / max(rounds, 1)
        x = best["plain"] / best[f"k={k}"]
        forwards = k * c + min(cost["target", k + 1]) / step
        need = acceptance_needed(args.goal, k, e / x)
        print(
            f"| {k} | {100 * accepted / max(proposed, 1):.0f}% | {e:.2f} "
            f"| {total / best[f'k={k}']:.1f} | {x:.2f}x | {forwards:.2f} | {e / x:.2f} "
            f"| {args.goal * e / x:.2f} | {'unreachable' if need is None else f'{100 * need:.0f}%'} |"
        )
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
