"""Decode speed of plain, compiled and weight-quantized (int8 / int4) models, against the limit.

One token per row per step reads every weight once, so a step cannot be faster than
``bytes read per step / memory bandwidth``. For each model shape (random weights) this prints,
per variant and batch size: weight bytes, bytes one step reads, ms per step (median of the step
intervals of the real generation loop, prefill excluded), tokens/s, the ratio to ``plain``
measured in the same process with the variants interleaved, and the achieved bandwidth (bytes
read per step / step time) next to the copy bandwidth measured here (a large tensor copy,
read + write bytes / time: the machine's practical limit).

``int8pack`` rows are a reference, not a ``quantize=`` mode: the ``int8`` model with each linear
calling PyTorch's CPU int8 kernel ``aten._weight_int8pack_mm`` directly
(``benchmarks/int8_kernels.py``), which no torchao 0.18 configuration reaches in eager mode.

``--generate N`` adds the compile question: wall time of one N-token greedy generation from a
cold start, eager vs compiled, the compiled one including its compilation (a fresh, empty
inductor cache).

    python benchmarks/fast_decode.py --presets gpt2-small llama-small
    python benchmarks/fast_decode.py --presets tiny gpt2-small --variants plain --generate 256
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from int8_kernels import use_int8pack  # benchmarks/ is on sys.path when run as a script

from nextok.generation import SamplingParams, compile_decode_step, generate, stream
from nextok.generation.quantize import (
    QUANTIZE_MODES,
    bytes_read_per_step,
    quantize_model,
    weight_bytes,
)
from nextok.model import ModelConfig, Transformer

GREEDY = SamplingParams(temperature=0)
VARIANTS = (
    "plain",
    "compiled",
    "int8",
    "w8a8",
    "int4",
    "int8+compiled",
    "w8a8+compiled",
    "int4+compiled",
    "plain+bf16",
    "int8+bf16",
    "w8a8+bf16",
    "int4+bf16",
    "plain+bf16+compiled",
    "int8+bf16+compiled",
    "int8pack",
    "int8pack+bf16",
)


def copy_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Bytes per second of ``dst.copy_(src)`` on a ``mib`` MiB tensor (read + write), best run."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def prompts_for(model: Transformer, batch: int, context: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(batch * 1000 + context)
    return torch.randint(0, model.config.vocab_size, (batch, context), generator=g).tolist()


def step_seconds(model, prompts, new_tokens: int, decode_step=None) -> float:
    """Median seconds between consecutive decode steps of one greedy run (prefill excluded)."""
    stamps = []
    for _ in stream(model, prompts, new_tokens, GREEDY, decode_step=decode_step):
        stamps.append(time.perf_counter())
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(preset: str, need: int, dtype: str = "fp32") -> Transformer:
    base = ModelConfig.from_preset(preset)
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(preset, block_size=max(base.block_size, need))
    return Transformer(cfg).to(DTYPES[dtype]).eval()


# Every variant's model compiles Transformer.forward: one code object, so their graphs share
# dynamo's per-code cache; raise its limit so a later variant is not silently left eager.
torch._dynamo.config.recompile_limit = 64


def variant(model: Transformer, name: str):
    """(model, decode_step, seconds spent preparing it) for a variant such as ``int8+compiled``
    (``+bf16``: a bf16 copy of the model, next to the others' ``--dtype``; ``int8pack``: the
    ``int8`` model's linears calling ``aten._weight_int8pack_mm`` directly, a hand-written
    reference, not torchao's API)."""
    t = time.perf_counter()
    parts = name.split("+")
    quant = next((q for q in parts if q in QUANTIZE_MODES), None)
    if "int8pack" in parts:
        quant = "int8"
    if "bf16" in parts:
        model = copy.deepcopy(model).to(torch.bfloat16)
    if quant:
        model = quantize_model(model if "bf16" in parts else copy.deepcopy(model), quant)
    if "int8pack" in parts:
        use_int8pack(model)
    step = None
    if "compiled" in parts:
        from torch._dynamo.utils import counters

        before = counters["inductor"]["woq_matcher_count"]
        step = compile_decode_step(model)
        step_seconds(model, prompts_for(model, 1, 8), 4, step)  # compile outside the timed runs
        check = prompts_for(model, 1, 32)
        same = generate(model, check, 8, GREEDY, decode_step=step) == generate(
            model, check, 8, GREEDY
        )
        print(f"  {name}: same 8 greedy tokens as eager: {same}")
        print(f"  {name}: {logit_check(model, step, check[0], 8)}")
        woq = counters["inductor"]["woq_matcher_count"] - before
        if quant == "int8":  # inductor's weight-only-int8 rewrite to aten._weight_int8pack_mm
            print(f"  {name}: {woq} linear(s) rewritten to aten._weight_int8pack_mm by inductor")
    return model, step, time.perf_counter() - t


@torch.inference_mode()
def logit_check(model, step, prompt: list[int], n: int) -> str:
    """Compiled vs eager decode steps fed the same tokens (eager's greedy ones): the largest
    logit difference, and at each step whose argmax differs eager's own top-2 gap (a gap within
    the difference is a near-tie that rounding may flip, not a wrong computation)."""
    tokens = generate(model, [prompt], n, GREEDY)[0]
    rows = {}
    for name, fn in (("eager", model), ("compiled", step)):
        cache = model.make_kv_cache(1, max_seq_len=len(prompt) + n)
        logits, _ = model(torch.tensor([prompt]), kv_cache=cache, last_only=True)
        out = [logits[0, -1].float()]
        for tok in tokens[:-1]:
            logits, _ = fn(torch.tensor([[tok]]), kv_cache=cache, last_only=True)
            out.append(logits[0, -1].float())
        rows[name] = torch.stack(out)
    eager, compiled = rows["eager"], rows["compiled"]
    top2 = eager.topk(2).values
    flips = (eager.argmax(-1) != compiled.argmax(-1)).nonzero().flatten().tolist()
    gaps = ", ".join(f"{float(top2[i, 0] - top2[i, 1]):.4f}" for i in flips) or "-"
    return (
        f"teacher-forced over {n} steps: max |compiled - eager| logit "
        f"{float((compiled - eager).abs().max()):.4f} (max |logit| {float(eager.abs().max()):.2f}); "
        f"argmax differs at {len(flips)} step(s), eager top-2 gap there: {gaps}"
    )


def speed_table(args, preset: str, bandwidth: list[float]) -> None:
    model = build(preset, args.context + args.new_tokens, args.dtype)
    cfg = model.config
    print(
        f"\nmodel: preset {preset} (random weights), {model.num_parameters() / 1e6:.1f}M params, "
        f"{cfg.n_layer} layers, d_model {cfg.d_model}, vocab {cfg.vocab_size}, {args.dtype} on cpu, "
        f"{torch.get_num_threads()} threads; prompt {args.context} tokens, "
        f"{args.new_tokens} new tokens, median step of the best of {args.repeats} runs"
    )
    built = {}
    for name in args.variants:
        built[name] = variant(model, name)
        if built[name][2]:
            print(f"  {name}: prepared in {built[name][2]:.1f} s")
    runs: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):  # interleaved: load spikes hit every variant alike
        bandwidth.append(copy_bandwidth())
        for batch in args.batches:
            prompts = prompts_for(model, batch, args.context)
            for name in args.variants:
                m, step, _ = built[name]
                runs.setdefault((name, batch), []).append(
                    step_seconds(m, prompts, args.new_tokens, step)
                )
    print(
        "| variant | batch | weight MB | read MB/step | ms/step | tokens/s | x vs plain "
        "| achieved GB/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch in args.batches:
        plain = min(runs["plain", batch]) if "plain" in args.variants else None
        for name in args.variants:
            m = built[name][0]
            s = min(runs[name, batch])
            read = bytes_read_per_step(m)
            ratio = f"{plain / s:.2f}x" if plain else "-"
            print(
                f"| {name} | {batch} | {weight_bytes(m) / 1e6:.1f} | {read / 1e6:.1f} "
                f"| {s * 1e3:.2f} | {batch / s:.1f} | {ratio} | {read / s / 1e9:.2f} |"
            )


def generate_once(preset: str, new_tokens: int, compiled: bool) -> None:
    """Child process: one cold ``new_tokens`` generation; prints its wall time."""
    model = build(preset, 32 + new_tokens)
    prompts = prompts_for(model, 1, 32)
    t = time.perf_counter()
    step = compile_decode_step(model) if compiled else None
    out = generate(model, prompts, new_tokens, GREEDY, decode_step=step)
    print(f"{time.perf_counter() - t:.3f} {out[0][:8]}")


def _child(args, preset: str, compiled: bool, cache: str) -> tuple[float, str]:
    cmd = [sys.executable, __file__, "--child", preset, str(args.generate)]
    cmd += ["--compiled"] if compiled else []
    cmd += ["--threads", str(args.threads)] if args.threads else []
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    seconds, tokens = out.split(maxsplit=1)
    return float(seconds), tokens.strip()


def compile_table(args) -> None:
    """Eager vs compiled, each run a fresh process, alternated ``repeats`` times; compiled from an
    empty inductor cache (cold) and again from the cache that run filled (warm)."""
    print(
        f"\n{args.generate}-token greedy generation (batch 1, 32-token prompt), wall time of a "
        "fresh process's generate() call incl. compilation, best of "
        f"{args.repeats}"
    )
    print(
        "| preset | eager s | compiled, cold cache s | compiled, warm cache s | cold vs eager "
        "| warm vs eager | tokens |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for preset in args.presets:
        eager, cold, warm, tokens = [], [], [], set()
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                for runs, compiled in ((eager, False), (cold, True), (warm, True)):
                    seconds, toks = _child(args, preset, compiled, cache)
                    runs.append(seconds)
                    tokens.add(toks)
        e, c, w = min(eager), min(cold), min(warm)
        same = "same" if len(tokens) == 1 else "DIFFER"
        print(f"| {preset} | {e:.1f} | {c:.1f} | {w:.1f} | {e / c:.2f}x | {e / w:.2f}x | {same} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["gpt2-small", "llama-small"])
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--context", type=int, default=32, help="prompt tokens per row")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="model dtype")
    p.add_argument("--generate", type=int, default=0, help="also time an N-token generation")
    p.add_argument("--child", nargs=2, metavar=("PRESET", "N"), help=argparse.SUPPRESS)
    p.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        generate_once(args.child[0], int(args.child[1]), args.compiled)
        return
    print(
        "command: python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    )
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average at start), {os.cpu_count()} cores")
    bandwidth: list[float] = []
    if args.variants:
        for preset in args.presets:
            speed_table(args, preset, bandwidth)
        print(
            f"\ncopy bandwidth (256 MiB tensor copy, read + write): best "
            f"{max(bandwidth) / 1e9:.2f} GB/s, median {statistics.median(bandwidth) / 1e9:.2f} "
            f"GB/s over {len(bandwidth)} measurements interleaved with the runs above"
        )
    if args.generate:
        compile_table(args)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average at the end)")


if __name__ == "__main__":
    main()
