"""Speculative decoding in the serving engine (prompt lookup; ``--draft``: a draft model too):
output tokens/s against the plain engine on code prompts, greedy, at several numbers of
concurrent requests.

Prompts are consecutive ``--prompt-tokens``-token windows of the held-out stdlib files (the
default corpus's validation split); every request generates ``--new-tokens``
tokens (EOS ignored: no ``eos_id``). For each concurrency the plain engine and the engine with
``PromptLookup(k, ngram)`` run on the same requests, interleaved ``--repeats`` times, the fastest
run of each kept; the speculative output is checked token for token against the plain one.
``--draft PATH`` (a checkpoint with the target's tokenizer, e.g. ``WORK/draft/checkpoints/
last.ckpt`` of ``benchmarks/speculative.py``) adds the engine with ``DraftModel(draft, k)``.
The checkpoint should be trained (a random model's text repeats nothing a lookup could find):
``benchmarks/speculative.py`` trains one (``WORK/target/checkpoints/last.ckpt``).

    python benchmarks/serve_speculative.py --ckpt /tmp/specbench/target/checkpoints/last.ckpt
    python benchmarks/serve_speculative.py --ckpt last.ckpt --requests 1 16 64 -k 4 --ngram 3
    python benchmarks/serve_speculative.py --ckpt WORK/target/checkpoints/last.ckpt \
        --draft WORK/draft/checkpoints/last.ckpt --requests 1 8
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from nextok.checkpoint import load_checkpoint
from nextok.data.sources import stdlib_files
from nextok.data.sources.split import _is_val_doc
from nextok.generation import DraftModel, PromptLookup, SamplingParams
from nextok.serving import Engine, Request

GREEDY = SamplingParams(temperature=0)


def code_prompts(tokenizer, n: int, length: int) -> list[list[int]]:
    """``n`` prompts of ``length`` tokens: consecutive windows of the held-out stdlib files (the
    default run's validation split: val_fraction 0.01, seed 1337), file after file."""
    rows: list[list[int]] = []
    for path in stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        if not _is_val_doc(text, 0.01, 1337):
            continue
        ids = tokenizer.encode(text).ids
        rows += [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
        if len(rows) >= n:
            return rows[:n]
    return rows


def run(model, prompts, n: int, proposer) -> tuple[float, list[list[int]]]:
    """Seconds to finish every request at once, and their tokens."""
    engine = Engine(model, max_running=len(prompts), proposer=proposer)
    t0 = time.perf_counter()
    out = engine.generate([Request(p, n, GREEDY) for p in prompts])
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--requests", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("-k", type=int, default=4, help="num_speculative_tokens")
    p.add_argument("--ngram", type=int, default=3, help="prompt_lookup_max_ngram")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--draft", default=None, help="a draft model checkpoint (same tokenizer)")
    args = p.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]))
    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.ckpt, device="cpu", dtype=torch.float32)
    model = loaded.model.eval()
    draft = None
    if args.draft:
        draft = load_checkpoint(args.draft, device="cpu", dtype=torch.float32).model.eval()
    prompts = code_prompts(loaded.tokenizer, max(args.requests), args.prompt_tokens)
    if len(prompts) < max(args.requests):
        raise SystemExit(f"the held-out files give only {len(prompts)} prompts")
    print(
        f"model: {model.num_parameters() / 1e6:.2f}M params; cpu fp32, {args.threads} threads; "
        f"prompts {args.prompt_tokens} tokens, {args.new_tokens} new tokens each, greedy"
    )
    modes = {"prompt lookup": lambda: PromptLookup(args.k, args.ngram)}
    if draft is not None:
        modes["draft model"] = lambda: DraftModel(draft, args.k)
    print("| requests | plain tok/s | mode | tok/s | x plain | accepted / proposed |")
    print("|---|---|---|---|---|---|")
    for c in args.requests:
        work = prompts[:c]
        plain_s = float("inf")
        spec_s = dict.fromkeys(modes, float("inf"))
        stats = {}
        for _ in range(args.repeats):  # interleaved, the fastest of each kept
            seconds, want = run(model, work, args.new_tokens, None)
            plain_s = min(plain_s, seconds)
            for mode, make in modes.items():
                proposer = make()
                seconds, got = run(model, work, args.new_tokens, proposer)
                if got != want:
                    raise SystemExit(f"{c} requests: {mode} changed the greedy output")
                spec_s[mode], stats[mode] = min(spec_s[mode], seconds), proposer.stats
        tokens = c * args.new_tokens
        for mode in modes:
            st = stats[mode]
            rate = st["accepted"] / max(1, st["proposed"])
            print(
                f"| {c} | {tokens / plain_s:.0f} | {mode} | {tokens / spec_s[mode]:.0f} | "
                f"{plain_s / spec_s[mode]:.2f}x | {st['accepted']} / {st['proposed']} "
                f"({100 * rate:.0f}%) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
