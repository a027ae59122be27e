"""Speculative decoding on CPU: acceptance and tokens/s against plain KV-cached decoding and
against ``transformers``' assisted generation on the exported pair, greedy, batch 1.

1. Train (skipped when ``WORK/{target,draft}/checkpoints/last.ckpt`` exist): an 8-layer target
   (d_model ``--target-d-model``, 256) and a 2-layer draft (d_model 128) on the default corpus
   (the stdlib sources) with ``nextok-train`` and the default recipe (Muon, warmup-stable-decay;
   ``conf/experiment/default.yaml``) at 8 x 512-token sequences a step in bf16 autocast, for a
   fixed ``--train-steps`` / ``--draft-steps`` (no time cap: the decay needs its known end), both
   at once (one thread each); the draft uses the target's tokenizer. Both are exported with
   ``nextok-export`` for ``transformers``.
2. Decode: prompts are ``--prompt-tokens``-token windows of held-out stdlib files (the run's
   validation split): every file's opening first, then the windows after them; every variant
   generates ``--new-tokens`` tokens from each prompt (EOS ignored), the variants interleaved
   prompt by prompt, ``--repeats`` rounds, the fastest round of each variant reported. nextok's
   speculative variants are checked token for token against nextok's plain output;
   transformers' against its own greedy output. ``decode x`` is the ratio to plain without the
   target's prompt forwards (timed alone in the same rounds), which every fp32 row runs alike.

    python benchmarks/speculative.py --work /tmp/specbench
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from fast_decode import copy_bandwidth  # benchmarks/ is on sys.path when run as a script

from nextok.checkpoint import load_checkpoint
from nextok.data.sources.split import _is_val_doc
from nextok.data.sources.stdlib import stdlib_files
from nextok.generation import (
    DraftModel,
    PromptLookup,
    SamplingParams,
    compile_decode_step,
    generate,
    quantize_model,
)
from nextok.generation.quantize import bytes_read_per_step, weight_bytes
from nextok.model import Transformer

GREEDY = SamplingParams(temperature=0)
DRAFT = "model.n_layer=2 model.d_model=128 model.n_head=4 model.n_kv_head=2"


def target_shape(d_model: int) -> str:
    """The 8-layer target at width ``d_model`` (64-wide heads, 2 query heads per KV head)."""
    heads = d_model // 64
    return (
        f"model.n_layer=8 model.d_model={d_model} model.n_head={heads} model.n_kv_head={heads // 2}"
    )


def exe(name: str) -> list[str]:
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", f"nextok.cli.{name.split('-')[1]}"]


def train(work: Path, steps: dict[str, int], block: int, d_model: int = 256) -> None:
    """Both models trained at once, one thread each; the draft waits for the target's tokenizer."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = [
        f"model.block_size={block}",
        "data.batch_size=8",
        "trainer.precision=bf16-mixed",  # ~1.75x the fp32 step on this CPU (AMX)
        "callbacks.sampling=null",
        "tasks=[]",
    ]
    shapes = {"target": target_shape(d_model), "draft": DRAFT}
    procs = []
    for name in ("target", "draft"):
        if (work / name / "checkpoints" / "last.ckpt").is_file():
            continue
        n = steps[name]
        fixed = [f"trainer.max_steps={n}", f"trainer.val_check_interval={n}"]
        fixed.append(f"callbacks.last_checkpoint.every_n_train_steps={n}")
        args = [*exe("nextok-train"), f"name=spec_{name}", *shapes[name].split(), *common, *fixed]
        args.append(f"hydra.run.dir={work / name}")
        if name == "draft":
            tok = work / "target" / "tokenizer.json"
            while not tok.is_file() and procs and procs[0].poll() is None:
                time.sleep(2)
            args.append(f"data.tokenizer_path={tok}")
        print("$", shlex.join(args), flush=True)
        log = open(work / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"training failed: see {work}/*.log")
    for name in ("target", "draft"):
        out = work / f"{name}_hf"
        if not (out / "config.json").is_file():
            ckpt = work / name / "checkpoints" / "last.ckpt"
            subprocess.run([*exe("nextok-export"), f"ckpt={ckpt}", f"out={out}"], check=True)


def held_out(tokenizer, n: int, total: int) -> list[list[int]]:
    """Up to ``n`` windows of ``total`` tokens from the held-out stdlib files: each file's
    first window, then each file's second (the next ``total`` tokens), and so on, so that a
    few prompts are the files' openings and more prompts reach into their code."""
    files = []
    for path in stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        if _is_val_doc(text, 0.01, 1337):
            files.append(tokenizer.encode(text).ids)
    rows = []
    for w in range(max((len(ids) // total for ids in files), default=0)):
        for ids in files:
            if len(rows) < n and len(ids) >= (w + 1) * total:
                rows.append(ids[w * total : (w + 1) * total])
    return rows


@torch.inference_mode()
def perplexity(model, rows: list[list[int]]) -> float:
    """exp(mean next-token cross-entropy) over ``rows``, in the model's dtype."""
    idx = torch.tensor(rows)
    logits, _ = model(idx[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
    return float(loss.exp())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="run folders and exports go here")
    p.add_argument("--train-steps", type=int, default=1200, help="the target's")
    p.add_argument("--draft-steps", type=int, default=2400)
    p.add_argument("--target-d-model", type=int, default=256, help="the target's width")
    p.add_argument("--block", type=int, default=512)
    p.add_argument("--prompts", type=int, default=6)
    p.add_argument("--prompt-tokens", type=int, default=320)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--k", type=int, default=4, help="num_speculative_tokens (the draft's)")
    p.add_argument("--lookup-k", type=int, default=None, help="prompt lookup's k (default: --k)")
    p.add_argument(
        "--draft-confidence-threshold",
        type=float,
        default=0.4,
        help="the draft stops guessing after a token it gives less than this probability",
    )
    p.add_argument("--ngram", type=int, default=3, help="prompt_lookup_max_ngram")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="*", default=None, help="default: all")
    p.add_argument("--no-hf", action="store_true", help="skip transformers' variants")
    args = p.parse_args(argv)
    print("$ python benchmarks/speculative.py", shlex.join(sys.argv[1:] if argv is None else argv))
    args.work.mkdir(parents=True, exist_ok=True)
    steps = {"target": args.train_steps, "draft": args.draft_steps}
    train(args.work, steps, args.block, args.target_d_model)
    torch.set_num_threads(args.threads)
    print(f"load before: {os.getloadavg()[0]:.1f}; torch threads {args.threads}", flush=True)

    loaded = load_checkpoint(args.work / "target" / "checkpoints" / "last.ckpt")
    target, tok = loaded.model, loaded.tokenizer
    draft = load_checkpoint(args.work / "draft" / "checkpoints" / "last.ckpt").model
    total = args.prompt_tokens + args.new_tokens
    rows = held_out(tok, args.prompts, total)
    prompts = [r[: args.prompt_tokens] for r in rows]
    n = args.new_tokens
    k, lk, conf = args.k, args.lookup_k or args.k, args.draft_confidence_threshold

    def nextok(model, proposer=None, step=None):
        def run(prompt):
            if proposer is not None:
                proposer.stats.update(proposed=0, accepted=0)
                out = generate(model, [prompt], n, GREEDY, proposer=proposer)[0]
                run.stats[0] += proposer.stats["proposed"]
                run.stats[1] += proposer.stats["accepted"]
                return out
            return generate(model, [prompt], n, GREEDY, decode_step=step)[0]

        run.stats = [0, 0]
        return run

    @functools.cache
    def quantized(mode: str, model: str = "target"):
        """The target (or draft) with quantized weights, built only for a variant that runs."""
        base = copy.deepcopy(target if model == "target" else draft)
        return quantize_model(base if mode == "int8" else base.to(torch.bfloat16), mode)

    makers = {
        "plain": lambda: (nextok(target), target, "plain"),
        "compiled": lambda: (nextok(target, step=compile_decode_step(target)), target, "plain"),
        "int8": lambda: (nextok(quantized("int8")), quantized("int8"), "int8"),
        "int4 (bf16)": lambda: (nextok(quantized("int4")), quantized("int4"), "int4 (bf16)"),
        f"draft k={k}": lambda: (nextok(target, DraftModel(draft, k, conf)), target, "plain"),
        f"prompt lookup k={lk}": lambda: (
            nextok(target, PromptLookup(lk, args.ngram)),
            target,
            "plain",
        ),
        f"int4 + draft k={k}": lambda: (
            nextok(quantized("int4"), DraftModel(quantized("int4", "draft"), k, conf)),
            quantized("int4"),
            "int4 (bf16)",
        ),
        f"int4 + prompt lookup k={lk}": lambda: (
            nextok(quantized("int4"), PromptLookup(lk, args.ngram)),
            quantized("int4"),
            "int4 (bf16)",
        ),
    }

    def wanted(name: str) -> bool:
        return not args.variants or name.split(" k=")[0] in args.variants

    variants = {name: make() for name, make in makers.items() if wanted(name)}
    if not args.no_hf and (
        not args.variants or any(v.startswith("transformers") for v in args.variants)
    ):
        hf = hf_variants(args.work, n, k, lk, args.ngram, conf)
        variants.update({name: v for name, v in hf.items() if wanted(name)})

    for fn, _, _ in variants.values():  # warm-up (and compilation) outside the timing
        fn(prompts[0][:16])
        if hasattr(fn, "stats"):
            fn.stats[:] = [0, 0]
    best = {name: float("inf") for name in variants}
    outputs: dict[str, list] = {}
    prefill = float("inf")  # the target's prompt forwards, which every nextok variant runs
    for r in range(args.repeats):
        seconds = dict.fromkeys(variants, 0.0)
        spent = 0.0
        for prompt in prompts:
            spent += time_prefill(target, prompt)
            for name, (fn, _, _) in variants.items():
                t = time.perf_counter()
                out = fn(prompt)
                seconds[name] += time.perf_counter() - t
                if r == 0:
                    outputs.setdefault(name, []).append(out)
        prefill = min(prefill, spent)
        for name in variants:
            best[name] = min(best[name], seconds[name])
        print(f"round {r + 1}: load {os.getloadavg()[0]:.1f}", flush=True)

    bandwidth = copy_bandwidth()
    ours = {id(m): m for _, m, _ in variants.values() if isinstance(m, Transformer)}
    ppl = {key: perplexity(m, rows) for key, m in {id(target): target, **ours}.items()}
    tokens = n * len(prompts)
    print(
        f"\n{len(prompts)} windows of held-out stdlib files: {args.prompt_tokens}-token prompts, "
        f"{n} new tokens each, greedy, batch 1; best of {args.repeats} interleaved rounds"
    )
    print(
        "| variant | tokens/s | x vs plain | decode x | acceptance | ppl change | same tokens as "
        "| weight MB | read MB/token | GB/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    base = ppl[id(target)]
    for name, (fn, model, reference) in variants.items():
        rate = tokens / best[name]
        stats = getattr(fn, "stats", None)
        acc = f"{100 * stats[1] / stats[0]:.0f}%" if stats and stats[0] else "-"
        same = outputs[name] == outputs.get(reference, outputs[name])
        change = f"{100 * (ppl[id(model)] / base - 1):+.2f}%" if id(model) in ppl else "-"
        read = bytes_read_per_step(model)
        decode = "-"
        if name.split(" ")[0] in ("draft", "prompt", "compiled"):  # fp32 target's own prefill
            decode = f"{(best['plain'] - prefill) / (best[name] - prefill):.2f}x"
        print(
            f"| {name} | {rate:.1f} | {rate / (tokens / best['plain']):.2f}x | {decode} | {acc} "
            f"| {change} "
            f"| {reference if same else 'DIFFERENT from ' + reference} "
            f"| {weight_bytes(model) / 1e6:.1f} | {read / 1e6:.1f} | {read * rate / 1e9:.2f} |"
        )
    print(
        f"held-out perplexity (the {len(rows)} windows of {total} tokens): fp32 {base:.2f}; "
        f"draft read MB/token {bytes_read_per_step(draft) / 1e6:.1f}; "
        f"copy bandwidth {bandwidth / 1e9:.2f} GB/s (256 MiB copy_, read + write)"
    )
    print(
        f"prefill: the target's forward over the {len(prompts)} prompts takes {prefill:.2f} s of "
        f"plain's {best['plain']:.2f} s; decode x = (plain - prefill) / (variant - prefill)"
    )
    print(f"load after: {os.getloadavg()[0]:.1f}")


@torch.inference_mode()
def time_prefill(model, prompt: list[int]) -> float:
    """Seconds of the cached prompt forward that starts every generation (as ``generate``'s)."""
    cache = model.make_kv_cache(1, max_seq_len=len(prompt) + 1)
    t = time.perf_counter()
    model(torch.tensor([prompt]), kv_cache=cache, last_only=True)
    return time.perf_counter() - t


def hf_variants(work: Path, n: int, k: int, lk: int, ngram: int, conf: float) -> dict:
    """transformers: plain greedy, assisted by the draft (k guesses, the same confidence
    cut-off), prompt lookup (``lk`` guesses) (its ``generate``)."""
    import transformers

    transformers.logging.set_verbosity_error()
    target = transformers.AutoModelForCausalLM.from_pretrained(work / "target_hf").eval()
    draft = transformers.AutoModelForCausalLM.from_pretrained(work / "draft_hf").eval()
    common = dict(do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)

    def run(**extra):
        def fn(prompt):
            idx = torch.tensor([prompt])
            with torch.inference_mode():
                out = target.generate(idx, attention_mask=torch.ones_like(idx), **common, **extra)
            return out[0, len(prompt) :].tolist()

        return fn

    assisted = dict(
        assistant_model=draft,
        num_assistant_tokens=k,
        num_assistant_tokens_schedule="constant",
        assistant_confidence_threshold=conf,
    )
    return {
        "transformers plain": (run(), target, "transformers plain"),
        f"transformers assisted k={k}": (run(**assisted), target, "transformers plain"),
        f"transformers prompt lookup k={lk}": (
            run(prompt_lookup_num_tokens=lk, max_matching_ngram_size=ngram),
            target,
            "transformers plain",
        ),
    }


if __name__ == "__main__":
    main()
