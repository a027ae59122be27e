"""Serving throughput and latency: one-by-one vs static batching vs the continuous-batching engine.

The workload of issue 20: N requests (default 64) that all arrive at t=0, prompts of 16-256
tokens and outputs of 16-256 tokens drawn with a fixed seed; prompt text comes from the Python
stdlib sources (the default corpus), as UTF-8 bytes taken as token ids (a random-weight model:
the content does not change the speed). Every request is greedy and runs for exactly its drawn
output length (no EOS). The three modes run in one process on the same model:

- one-by-one: ``nextok.generation.generate`` on each prompt alone, in turn (what
  ``nextok-generate`` does with several prompts);
- static: one ``generate`` call over all prompts (left-padded, one contiguous cache, the batch
  lasts as long as its longest row; a finished row still computes until then);
- engine: :class:`nextok.serving.Engine` (paged KV cache, continuous batching).
- hf: the same weights exported with :func:`nextok.hf.export_hf` and loaded by ``transformers``;
  one batched ``generate`` (left-padded, greedy, to the longest output; a row's own tokens count).
- hf-cb: ``transformers``' continuous batching (the manager behind ``generate_batch``), each
  request with its own ``max_new_tokens``; timestamps from its ``record_timestamps``.

TTFT counts from the arrival (t=0); per-token latency is the interval between a request's
consecutive tokens. Peak KV memory: the engine's blocks in use at its peak vs the bytes of the
tokens alive then; the static cache's (batch x longest) allocation vs its peak tokens alive.

    python benchmarks/serve.py                    # tiny preset, 64 requests
    python benchmarks/serve.py --requests 16 --max-len 128
    python benchmarks/serve.py --threads 1 --modes static engine --repeats 3
    python benchmarks/serve.py --set d_model=512 n_layer=8 n_head=8 --modes static engine hf
    python benchmarks/serve.py --threads 1 --modes static engine --profile   # where steps go

``--profile`` runs each of static and engine once more under ``torch.profiler`` and prints the
operators that take the most time; the "work" line counts what static batching computes
(padded prompts, every row until the longest output) against what the workload needs.
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time

import torch

from nextok.data.sources import stdlib_files
from nextok.generation import SamplingParams, generate
from nextok.model import ModelConfig, Transformer
from nextok.serving import Engine, Request

GREEDY = SamplingParams(temperature=0)


def workload(n: int, lo: int, hi: int, seed: int) -> list[tuple[list[int], int]]:
    """(prompt ids, output length) per request; prompts are stdlib source bytes."""
    rng = random.Random(seed)
    files = stdlib_files()
    out = []
    for _ in range(n):
        p_len, o_len = rng.randint(lo, hi), rng.randint(lo, hi)
        data = b""
        while len(data) < p_len:
            data = rng.choice(files).read_bytes()
        start = rng.randrange(0, len(data) - p_len + 1)
        out.append((list(data[start : start + p_len]), o_len))
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summarize(name, seconds, stamps: list[list[float]], kv_bytes=None, alive_bytes=None) -> dict:
    tokens = sum(len(s) for s in stamps)
    gaps = [b - a for s in stamps for a, b in zip(s, s[1:])]
    ttft = [s[0] for s in stamps if s]
    return dict(
        mode=name,
        tok_s=tokens / seconds,
        seconds=seconds,
        ttft_p50=statistics.median(ttft),
        ttft_p99=pct(ttft, 99),
        tpot_p50=statistics.median(gaps),
        tpot_p99=pct(gaps, 99),
        kv_mb=None if kv_bytes is None else kv_bytes / 2**20,
        kv_ratio=None if kv_bytes is None else kv_bytes / alive_bytes,
    )


def one_by_one(model, work) -> dict:
    stamps: list[list[float]] = []
    t0 = time.perf_counter()
    for prompt, n in work:
        stamps.append([])
        generate(
            model,
            [prompt],
            n,
            GREEDY,
            on_token=lambda _: stamps[-1].append(time.perf_counter() - t0),
        )
    return summarize("one-by-one", time.perf_counter() - t0, stamps)


def static(model, work, bytes_per_token: int) -> dict:
    prompts = [p for p, _ in work]
    lengths = [n for _, n in work]
    stamps: list[list[float]] = [[] for _ in work]
    t0 = time.perf_counter()

    def on_token(step):
        now = time.perf_counter() - t0
        for b, tok in enumerate(step):
            if tok is not None:
                stamps[b].append(now)

    def stop(b, tokens):  # each row ends at its own length; the batch runs to the longest
        return len(tokens) >= lengths[b]

    generate(model, prompts, max(lengths), GREEDY, on_token=on_token, stop_fn=stop)
    seconds = time.perf_counter() - t0
    t_max = max(len(p) for p in prompts) + max(lengths)
    allocated = len(work) * t_max * bytes_per_token
    alive = sum(len(p) + n for p, n in work) * bytes_per_token  # at the end, nothing freed
    return summarize("static batch", seconds, stamps, allocated, alive)


def engine_run(model, work, args) -> tuple[dict, Engine]:
    engine = Engine(
        model,
        block_size_tokens=args.block_tokens,
        max_tokens_per_step=args.step_tokens,
        max_running=args.max_running,
    )
    stamps: dict[int, list[float]] = {}
    peak_blocks, alive_at_peak = 0, 0
    t0 = time.perf_counter()
    ids = [engine.add(Request(p, n, GREEDY)) for p, n in work]
    while engine.has_work:
        outs = engine.step()
        now = time.perf_counter() - t0
        used = engine.cache.allocator.num_used
        if used > peak_blocks:
            peak_blocks, alive_at_peak = used, engine.cache.tokens_alive()
        for o in outs:
            if o.token is not None:
                stamps.setdefault(o.seq_id, []).append(now)
    seconds = time.perf_counter() - t0
    bpt = engine.cache.bytes_per_token
    kv = peak_blocks * engine.cache.block_size * bpt
    return summarize("engine", seconds, [stamps[i] for i in ids], kv, alive_at_peak * bpt), engine


def padding_waste(work) -> str:
    """What static batching computes over what the workload needs: prompt tokens (every prompt
    padded to the longest) and decode rows (every row runs to the longest output)."""
    n, p_max, o_max = len(work), max(len(p) for p, _ in work), max(o for _, o in work)
    prompt, out = sum(len(p) for p, _ in work), sum(o for _, o in work)
    return (
        f"work: static batching computes {n * p_max / prompt:.2f}x the prompt tokens and "
        f"{n * o_max / out:.2f}x the decode rows this workload needs"
    )


def profile(name: str, run) -> None:
    """The operators that take the most self time over one run of ``run``."""
    from torch.profiler import profile as torch_profile

    with torch_profile() as prof:
        run()
    print(f"profile of {name}:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def export(model, folder: str):
    """The model as a ``transformers`` model (through a Hugging Face folder), fp32, eval."""
    from transformers import AutoModelForCausalLM

    from nextok.hf import export_hf

    export_hf(model, folder)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def hf_batched(hf, work) -> dict:
    """One left-padded batched ``generate``; a logits processor stamps each step."""
    from transformers import LogitsProcessor, LogitsProcessorList

    lengths = [n for _, n in work]
    width = max(len(p) for p, _ in work)
    ids = torch.zeros(len(work), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, (p, _) in enumerate(work):
        ids[b, width - len(p) :], mask[b, width - len(p) :] = torch.tensor(p), 1
    steps: list[float] = []

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            steps.append(time.perf_counter() - t0)
            return scores

    t0 = time.perf_counter()
    with torch.inference_mode():
        hf.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max(lengths),
            min_new_tokens=max(lengths),  # no early EOS: every row runs its drawn length
            do_sample=False,
            pad_token_id=0,
            logits_processor=LogitsProcessorList([Stamp()]),
        )
    seconds = time.perf_counter() - t0
    return summarize("transformers generate", seconds, [steps[:n] for n in lengths])


def hf_continuous(hf, work, args) -> dict:
    """``transformers``' continuous-batching manager, one request per prompt; its pool and
    step budget sized as the engine's (left to itself on CPU it sizes them from free memory)."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=max(n for _, n in work))
    page = 256
    sizes = ContinuousBatchingConfig(
        page_size=page,
        num_blocks=args.max_running * -(-hf.config.max_position_embeddings // page),
        max_batch_tokens=args.step_tokens,
        max_requests_per_batch=args.max_running,
    )
    t0 = time.perf_counter()
    with (
        torch.inference_mode(),
        hf.continuous_batching_context_manager(
            generation_config=config,
            continuous_batching_config=sizes,
            block=True,
            timeout=5,
            warmup=False,
        ) as manager,
    ):
        rids = [
            manager.add_request(p, max_new_tokens=n, record_timestamps=True, eos_token_id=-1)
            for p, n in work
        ]
        results = {}
        while len(results) < len(rids):
            r = manager.get_result(timeout=1)
            if r is not None and r.is_finished():
                results[r.request_id] = r
            elif r is None and not manager.is_running():
                raise RuntimeError("transformers' continuous batching stopped")
    seconds = time.perf_counter() - t0
    stamps = []
    for rid, (_, n) in zip(rids, work):
        got = results[rid]
        if got.error or len(got.generated_tokens) != n:
            raise RuntimeError(f"request {rid}: {got.error or len(got.generated_tokens)} tokens")
        stamps.append([t - t0 for t in got.timestamps])
    return summarize("transformers continuous batching", seconds, stamps)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", nargs="*", default=[], help="model config overrides KEY=INT")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--min-len", type=int, default=16)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block-tokens", type=int, default=16)
    p.add_argument("--step-tokens", type=int, default=256)
    p.add_argument("--max-running", type=int, default=64)
    p.add_argument("--modes", nargs="+", default=["one-by-one", "static", "engine"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=1, help="interleaved runs; the fastest is kept")
    p.add_argument("--profile", action="store_true", help="static and engine under torch.profiler")
    args = p.parse_args(argv)
    print(
        "command: python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    base = ModelConfig.from_preset(args.preset)
    sets = {k: int(v) for k, v in (a.split("=", 1) for a in args.set)}
    block = max(base.block_size, 2 * args.max_len)
    cfg = ModelConfig.from_preset(args.preset, **{"block_size": block, **sets})
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    work = workload(args.requests, args.min_len, args.max_len, args.seed)
    print(
        f"model: preset {args.preset}, {model.num_parameters() / 1e6:.2f}M params, block "
        f"{cfg.block_size}; cpu fp32, {torch.get_num_threads()} threads; {len(work)} requests, "
        f"prompt {sum(len(p) for p, _ in work)} / output {sum(n for _, n in work)} tokens"
    )
    print(padding_waste(work))
    bpt = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * 4
    best: dict[str, dict] = {}
    hf = None
    if {"hf", "hf-cb"} & set(args.modes):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            hf = export(model, folder)

    def keep(row, cpu0):
        """The fastest of the repeats (the run least disturbed by other processes); tokens per
        CPU-second (this process's CPU time, all threads) is the best of the repeats too: on a
        loaded machine it counts the work done, not the time spent waiting for a core."""
        row["tok_cpu"] = row["tok_s"] * row["seconds"] / (time.process_time() - cpu0)
        old = best.get(row["mode"])
        if old is not None:
            row["tok_cpu"] = max(row["tok_cpu"], old["tok_cpu"])
        if old is None or row["tok_s"] > old["tok_s"]:
            best[row["mode"]] = row
        else:
            old["tok_cpu"] = row["tok_cpu"]

    for _ in range(args.repeats):  # modes interleaved, so a busy spell hits each of them
        if "one-by-one" in args.modes:
            cpu0 = time.process_time()
            keep(one_by_one(model, work), cpu0)
        if "static" in args.modes:
            cpu0 = time.process_time()
            keep(static(model, work, bpt), cpu0)
        if "engine" in args.modes:
            cpu0 = time.process_time()
            row, engine = engine_run(model, work, args)
            keep(row, cpu0)
            print(
                f"engine: {engine.preemptions} preemptions, pool {engine.cache.num_blocks} blocks"
            )
        if "hf" in args.modes:
            cpu0 = time.process_time()
            keep(hf_batched(hf, work), cpu0)
        if "hf-cb" in args.modes:
            cpu0 = time.process_time()
            keep(hf_continuous(hf, work, args), cpu0)
    if args.profile:
        profile("static batch", lambda: static(model, work, bpt))
        profile("engine", lambda: engine_run(model, work, args))
    rows = list(best.values())
    print(
        "| mode | output tok/s | tok per CPU-s | TTFT p50 / p99 (s) | per-token p50 / p99 (ms) "
        "| peak KV MiB (x tokens alive) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        kv = "-" if r["kv_mb"] is None else f"{r['kv_mb']:.1f} ({r['kv_ratio']:.2f}x)"
        print(
            f"| {r['mode']} | {r['tok_s']:.0f} | {r['tok_cpu']:.0f} | {r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | "
            f"{1e3 * r['tpot_p50']:.1f} / {1e3 * r['tpot_p99']:.1f} | {kv} |"
        )
    by = {r["mode"]: r for r in rows}
    if "engine" in by:
        for other in by:
            if other != "engine":
                wall = by["engine"]["tok_s"] / by[other]["tok_s"]
                cpu = by["engine"]["tok_cpu"] / by[other]["tok_cpu"]
                print(f"engine / {other} throughput: {wall:.2f}x (per CPU-second {cpu:.2f}x)")


if __name__ == "__main__":
    main()
