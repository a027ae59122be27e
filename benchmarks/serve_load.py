"""Load test of ``nextok-serve``'s stack on 127.0.0.1, and its overhead over the engine alone.

The server (the real FastAPI app + uvicorn + engine worker, tiny-preset random model, a BPE
tokenizer trained on stdlib sources) runs in a child process; the clients are asyncio tasks
with ``httpx`` in this process, each sending one non-streamed ``/v1/completions`` request after
another (prompt token ids and output lengths drawn as in ``benchmarks/serve.py``).

- load: ``--clients`` concurrent clients for ``--seconds`` (bounded): requests completed,
  errors (must be 0), latency p50/p90/p99, output tokens/s.
- overhead: the same ``--requests`` requests through the engine alone (at most ``--clients``
  running, as the server sees them) vs through the server: output tokens/s of each, ratio.

    python benchmarks/serve_load.py --clients 32 --seconds 60
    python benchmarks/serve_load.py --clients 16 --overhead-only
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import GREEDY, pct, workload  # noqa: E402

from nextok.model import ModelConfig, Transformer  # noqa: E402
from nextok.serving import Engine, Request  # noqa: E402


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from nextok.data.sources import stdlib_files
    from nextok.special_tokens import EOT

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [f.read_text(errors="replace") for f in stdlib_files()[:200]]
    tok.train_from_iterator(texts, trainer)
    return tok


def model(block: int) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig.from_preset("tiny", block_size=block)).eval()


def serve(port: int, block: int, max_running: int) -> None:
    """The child process: the real app on 127.0.0.1:port."""
    import uvicorn

    from nextok.serving.api import Served, build_app
    from nextok.serving.worker import EngineWorker

    torch.set_num_threads(1)
    tok = tokenizer()
    m = model(block)
    engine = Engine(m, tokenizer=tok, vocab_limit=tok.get_vocab_size(), max_running=max_running)
    served = Served(EngineWorker(engine), tok, "tiny", block, tok.get_vocab_size())
    served.worker.start()
    uvicorn.run(build_app(served), host="127.0.0.1", port=port, log_level="warning")


async def clients(url, work, n_clients, seconds=None):
    """Each client sends the next request of ``work`` until the work (or the time) runs out.

    The clients (one connection each) are made and connected before the clock starts: building
    an ``httpx`` client (its TLS context) costs tens of ms, which is not the server's time.
    """
    import httpx

    latencies, errors, tokens = [], 0, 0
    todo = list(work)
    pool = [httpx.AsyncClient(timeout=600) for _ in range(n_clients)]
    await asyncio.gather(*(http.get(url + "/health") for http in pool))
    t0 = time.perf_counter()

    async def client(http):
        nonlocal errors, tokens
        while todo and (seconds is None or time.perf_counter() - t0 < seconds):
            prompt, n = todo.pop(0)
            if seconds is not None:
                todo.append((prompt, n))  # the load test cycles through the workload
            body = dict(model="tiny", prompt=prompt, max_tokens=n, temperature=0)
            t = time.perf_counter()
            try:
                r = await http.post(url + "/v1/completions", json=body)
                r.raise_for_status()
                tokens += r.json()["usage"]["completion_tokens"]
                latencies.append(time.perf_counter() - t)
            except Exception:
                errors += 1

    try:
        await asyncio.gather(*(client(http) for http in pool))
        return latencies, errors, tokens, time.perf_counter() - t0
    finally:
        await asyncio.gather(*(http.aclose() for http in pool))


def engine_alone(work, block, max_running, tok) -> float:
    """The server's engine (same model, tokenizer and sizes) driven directly: its text is
    detokenized as in the server, so the difference is the HTTP stack alone."""
    torch.set_num_threads(1)
    engine = Engine(
        model(block), tokenizer=tok, vocab_limit=tok.get_vocab_size(), max_running=max_running
    )
    t0 = time.perf_counter()
    out = engine.generate([Request(p, n, GREEDY) for p, n in work])
    return sum(len(o) for o in out) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--overhead-only", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="interleaved overhead runs")
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    block = 2 * args.max_len
    if args.serve is not None:
        return serve(args.serve, block, args.clients)
    print(
        "command: python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv_child = [a for a in sys.argv[1:]]
    child = subprocess.Popen([sys.executable, __file__, *argv_child, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/health").raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and child.poll() is None, "server did not start"
                time.sleep(0.2)
        work = workload(args.requests, 16, args.max_len, 0)
        bpe = tokenizer()
        server_rate = engine_rate = 0.0
        for _ in range(args.repeats):  # interleaved; the fastest run of each is kept
            lat, err, tok, secs = asyncio.run(clients(url, work, args.clients))
            server_rate = max(server_rate, tok / secs)
            engine_rate = max(engine_rate, engine_alone(work, block, args.clients, bpe))
            print(
                f"overhead, {len(work)} requests, {args.clients} clients: engine alone "
                f"{engine_rate:.0f} output tok/s, through the server {server_rate:.0f} tok/s "
                f"(server / engine {server_rate / engine_rate:.2f}; errors {err})",
                flush=True,
            )
        if not args.overhead_only:
            lat, err, tok, secs = asyncio.run(clients(url, work, args.clients, args.seconds))
            print(
                f"load: {args.clients} clients for {secs:.0f} s: {len(lat)} requests completed, "
                f"{err} errors, latency p50 {statistics.median(lat):.2f} s / p90 "
                f"{pct(lat, 90):.2f} s / p99 {pct(lat, 99):.2f} s, {tok / secs:.0f} output tok/s"
            )
    finally:
        child.terminate()
        child.wait(60)


if __name__ == "__main__":
    main()
