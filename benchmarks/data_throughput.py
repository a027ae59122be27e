"""Data pipeline throughput: source -> packed (x, y) blocks, against raw ``encode_batch``.

Both are measured in the same run on the same training documents (the stdlib corpus by default),
so the ratio is meaningful on a noisy, shared machine. Prints tokens/s for:
  raw        tokenizer.encode_batch over the documents (ids discarded)
  map        LMDataModule.setup (documents -> token array) + one pass over train_dataloader()
  streaming  the iterable path: documents -> encode -> pack -> (x, y), one pass, single process
and pipeline/raw ratios, plus the margin over what a training run consumes (--train-tps).

  python benchmarks/data_throughput.py                 # stdlib, vocab 4096, block 256
  python benchmarks/data_throughput.py --repeat 3 --block-size 1024 --batch-size 8
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--encode-batch-docs", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="best of N timings for each measurement")
    ap.add_argument(
        "--train-tps",
        type=float,
        default=None,
        help="tokens/s training consumes; default: measure the default tiny model here and now",
    )
    ap.add_argument("--train-steps", type=int, default=3, help="steps timed for the training rate")
    args = ap.parse_args()

    import torch

    from nextok.data import LMDataModule

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(
        f"cpus: {os.cpu_count()}  torch threads: {torch.get_num_threads()}  "
        f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}"
    )
    run_dir = tempfile.mkdtemp(prefix="nextok-bench-")
    kw = dict(
        source="stdlib",
        vocab_size=args.vocab_size,
        block_size=args.block_size,
        batch_size=args.batch_size,
        run_dir=run_dir,
        encode_batch_docs=args.encode_batch_docs,
    )
    t0 = time.perf_counter()
    dm = LMDataModule(**kw)
    dm.prepare_data()
    print(
        f"tokenizer: vocab {dm.vocab_size}, trained in {time.perf_counter() - t0:.2f}s "
        f"(incl. reading the stdlib sources)"
    )
    train_docs, _ = dm.documents()
    texts = list(train_docs["text"])
    n_bytes = sum(len(t.encode()) for t in texts)
    tok = dm.tokenizer

    def raw(fast: bool = False) -> int:
        encode = tok.encode_batch_fast if fast else tok.encode_batch
        n = 0
        for i in range(0, len(texts), args.encode_batch_docs):
            n += sum(len(e.ids) for e in encode(texts[i : i + args.encode_batch_docs]))
        return n + len(texts)  # + one <|endoftext|> per document, as the pipeline emits

    def map_path() -> int:
        d = LMDataModule(**kw)  # tokenizer reused from run_dir; documents re-tokenized
        d.setup("fit")
        n = 0
        for x, _ in d.train_dataloader():
            n += x.numel()
        return n

    def streaming_path() -> int:
        d = LMDataModule(**kw, streaming=True, shuffle=False)
        d.setup("fit")
        ds = d.streaming_dataset("train")
        ds.infinite = False
        n = 0
        for x, _ in ds:
            n += x.numel()
        return n

    def best(fn) -> tuple[float, int]:
        times, n = [], 0
        for _ in range(args.repeat):
            t = time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - t)
        return min(times), n

    print(f"corpus: {len(texts)} training documents, {n_bytes / 1e6:.1f} MB")
    cases = [("raw encode_batch", raw)]
    if hasattr(tok, "encode_batch_fast"):  # what the pipeline calls (no offsets)
        cases.append(("raw encode_batch_fast", lambda: raw(fast=True)))
    cases += [("map (setup + loader)", map_path), ("streaming", streaming_path)]
    results = {}
    for name, fn in cases:
        dt, n = best(fn)
        results[name] = n / dt
        print(f"{name:>22}: {n / dt / 1e6:7.3f} M tokens/s  ({n:,} tokens in {dt:.2f}s)")
    train_tps = args.train_tps or measure_training(args, dm.vocab_size)
    raw_tps = results["raw encode_batch"]
    for name in ("map (setup + loader)", "streaming"):
        tps = results[name]
        print(
            f"{name:>22}: {tps / raw_tps:.2f}x raw encode_batch (target >= 0.8), "
            f"{tps / train_tps:.1f}x the training consumption of {train_tps:,.0f} tokens/s "
            "(target >= 10x)"
        )
    # after setup the map path is memory slicing: how fast can batches be served?
    d = LMDataModule(**kw)
    d.setup("fit")
    t = time.perf_counter()
    n = sum(x.numel() for x, _ in d.train_dataloader())
    print(
        f"{'serve cached blocks':>22}: {n / (time.perf_counter() - t) / 1e6:7.2f} M tokens/s "
        "(map path after setup: index + slice + collate)"
    )


def measure_training(args: argparse.Namespace, vocab_size: int) -> float:
    """Tokens/s of the default CPU training step (preset tiny, AdamW), in this run, on this load."""
    import torch

    from nextok.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("tiny", vocab_size=vocab_size, block_size=args.block_size)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, vocab_size, (args.batch_size, args.block_size))

    def step() -> None:
        _, loss = model(x, targets=x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    tps = args.train_steps * x.numel() / (time.perf_counter() - t)
    print(
        f"{'training (tiny, fwd+bwd+AdamW)':>22}: {tps / 1e6:7.3f} M tokens/s  (same machine, same run)"
    )
    return tps


if __name__ == "__main__":
    main()
