"""nextok's GPU benchmark suite: one command, offline, about 8 minutes on one H100/H200.

    python benchmarks/gpu_suite.py            # CUDA: the full suite, prints a markdown table
    python benchmarks/gpu_suite.py --smoke    # CPU, toy sizes: every code path in seconds

What it measures (all in one process, every ratio against a reference measured in the same run):
1. training throughput of ``gpt2-small`` at 1,024 tokens and ``llama-1b`` at 2,048: bf16 autocast,
   ``torch.compile`` (whole model), fused AdamW, grad clipping, the micro-batch sized to the
   device's memory (two eager probe steps give fixed + per-sequence memory): tokens/s, MFU
   against the device's dense bf16 peak (``PEAK_BF16``) and peak memory;
2. the same step through the Lightning path (``LMModule`` + ``Trainer``, bf16-mixed) vs the plain
   loop: tokens/s ratio (target <= 3% overhead);
3. bf16 autocast vs fp32 (TF32 off): loss after 30 steps on a fixed, learnable batch stream
   from the same initial weights (target: within 2%);
4. KV-cached decode tokens/s of ``llama-1b`` (bf16 weights, batch 1), eager and compiled;
5. the LM loss's peak memory at GPU shapes (``benchmarks/loss_memory.py``): plain vs chunked (vs
   Liger when installed);
6. the optimizer step of ``llama-1b`` (``benchmarks/optimizer_step.py``): Muon + AdamW with the
   Newton-Schulz iteration in bf16 and in fp32, against AdamW and one forward + backward.
``--smoke`` runs the same functions on CPU with toy configs of both families, few steps and
dynamo's ``eager`` backend (no C++ build); its numbers mean nothing, its code paths do.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loss_memory  # noqa: E402 - the sibling benchmarks
import optimizer_step  # noqa: E402

from nextok.generation import SamplingParams, compile_decode_step, stream  # noqa: E402
from nextok.model import ModelConfig, Transformer  # noqa: E402
from nextok.optim import AdamWConfig, build_adamw  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peak per device, FLOP/s (vendor data sheets, SXM parts).
# The first key found in the device name wins (PCIe parts are slower than SXM ones).
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}
TARGETS = {"gpt2-small": 0.40, "llama-1b": 0.50}  # MFU targets on H100/H200 (issue 11)


def peak_for_name(name: str) -> float | None:
    """Dense bf16 peak (FLOP/s) of a CUDA device by its name, None when not in the table."""
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def peak_flops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return f"cpu ({torch.get_num_threads()} threads)", None
    name = torch.cuda.get_device_name(device)
    return name, peak_for_name(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def learnable_batches(vocab: int, batch: int, seq: int, n: int, seed: int = 0):
    """Fixed stream of (x, y): sequences counting up from a random start by a random stride."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        start = torch.randint(0, vocab, (batch, 1), generator=g)
        stride = torch.randint(1, 4, (batch, 1), generator=g)
        seq_ = (start + stride * torch.arange(seq + 1)) % vocab
        yield seq_[:, :-1].contiguous(), seq_[:, 1:].contiguous()


class Setup:
    """Shapes, devices and step counts of a suite run (full or smoke)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.smoke = args.smoke
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.backend = "eager" if args.smoke else "inductor"
        self.amp_dtype = torch.bfloat16
        if args.smoke:
            self.models = {
                "gpt2-small": replace(
                    ModelConfig.from_preset("gpt2-small"),
                    vocab_size=256,
                    block_size=32,
                    n_layer=1,
                    n_head=2,
                    n_kv_head=2,
                    d_model=32,
                ),
                "llama-1b": replace(
                    ModelConfig.from_preset("llama-1b"),
                    vocab_size=256,
                    block_size=32,
                    n_layer=1,
                    n_head=4,
                    n_kv_head=2,
                    d_model=32,
                    ffn_hidden=64,
                ),
            }
            self.warmup, self.steps, self.decode_tokens, self.fixed_batch = 1, 2, 6, 2
        else:
            self.models = {
                "gpt2-small": replace(ModelConfig.from_preset("gpt2-small"), block_size=1024),
                "llama-1b": replace(ModelConfig.from_preset("llama-1b"), block_size=2048),
            }
            self.warmup, self.steps, self.decode_tokens, self.fixed_batch = 3, 10, 256, None
        self.max_batch = args.max_batch
        self.loss_steps = args.loss_steps


# ---------------------------------------------------------------------------- training
def build(cfg: ModelConfig, setup: Setup) -> Transformer:
    with torch.device(setup.device):  # initialised on the device: seconds, not minutes
        return Transformer(cfg)


def release(setup: Setup) -> None:
    """Free what a section held (compiled graphs keep their models alive)."""
    import gc

    torch._dynamo.reset()
    gc.collect()
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()


def make_step(model: Transformer, setup: Setup, dtype: torch.dtype | None, lr: float = 3e-4):
    opt = build_adamw(model, AdamWConfig(lr=lr))  # fused on CUDA (optim.implementation=auto)
    amp = torch.autocast(setup.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with amp:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def size_micro_batch(cfg: ModelConfig, setup: Setup) -> int:
    """Largest power of two whose step fits in 85% of the device, from two eager probe steps."""
    if setup.fixed_batch:
        return setup.fixed_batch
    peaks = []
    for b in (1, 2):
        torch.manual_seed(0)
        model = build(cfg, setup)
        step = make_step(model, setup, setup.amp_dtype)
        x = torch.randint(0, cfg.vocab_size, (b, cfg.block_size), device=setup.device)
        step(x, x)  # optimizer state allocated
        sync(setup.device)
        torch.cuda.reset_peak_memory_stats(setup.device)
        step(x, x)
        sync(setup.device)
        peaks.append(torch.cuda.max_memory_allocated(setup.device))
        del model, step, x
        torch.cuda.empty_cache()
    per_seq = max(1, peaks[1] - peaks[0])
    fixed = peaks[0] - per_seq
    total = torch.cuda.mem_get_info(setup.device)[1]
    fits = max(1, int((0.85 * total - fixed) // per_seq))
    return min(setup.max_batch, 2 ** int(math.log2(fits)))


def plain_loop(cfg: ModelConfig, batch: int, setup: Setup) -> dict[str, float]:
    """Tokens/s and peak memory of the compiled bf16 training step in a plain PyTorch loop."""
    torch.manual_seed(0)
    model = build(cfg, setup)
    model.compile(backend=setup.backend)
    step = make_step(model, setup, setup.amp_dtype)
    pin = setup.device.type == "cuda"
    batches = [
        tuple(t.pin_memory() if pin else t for t in xy)
        for xy in learnable_batches(
            cfg.vocab_size, batch, cfg.block_size, setup.warmup + setup.steps
        )
    ]
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    t0 = 0.0
    for i, (x, y) in enumerate(batches):
        if i == setup.warmup:
            sync(setup.device)
            t0 = time.perf_counter()
        step(x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True))
    sync(setup.device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(setup.device) if setup.device.type == "cuda" else 0
    del model, step
    return {"tokens_per_s": setup.steps * batch * cfg.block_size / seconds, "peak_bytes": peak}


def lightning_loop(cfg: ModelConfig, batch: int, setup: Setup) -> float:
    """Tokens/s of the same step through LMModule + Lightning Trainer (bf16-mixed, compiled)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from nextok.lit import LMModule
    from nextok.optim import ScheduleConfig

    xs, ys = zip(
        *learnable_batches(cfg.vocab_size, batch, cfg.block_size, setup.warmup + setup.steps)
    )
    data = TensorDataset(torch.cat(xs), torch.cat(ys))
    loader = DataLoader(data, batch_size=batch, pin_memory=setup.device.type == "cuda")
    clock: dict[str, float] = {}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx):
            if trainer.global_step in (setup.warmup, setup.warmup + setup.steps):
                sync(setup.device)
                clock[str(trainer.global_step)] = time.perf_counter()

    module = LMModule(
        cfg,
        optim=AdamWConfig(),
        schedule=ScheduleConfig(name="constant"),
        compile=True,
        compile_mode="model",
        compile_backend=setup.backend,
    )
    trainer = L.Trainer(
        accelerator=setup.device.type if setup.device.type == "cpu" else "gpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=setup.warmup + setup.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[Clock()],
        log_every_n_steps=50,
    )
    torch.manual_seed(0)
    trainer.fit(module, train_dataloaders=loader)
    seconds = clock[str(setup.warmup + setup.steps)] - clock[str(setup.warmup)]
    return setup.steps * batch * cfg.block_size / seconds


def bf16_vs_fp32(cfg: ModelConfig, setup: Setup) -> tuple[float, float]:
    """Loss after ``loss_steps`` steps (mean of the last 5) in fp32 and in bf16 autocast."""
    batch = 2 if setup.smoke else 8
    out = []
    for dtype in (None, torch.bfloat16):
        prec = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # true fp32 for the reference
        torch.manual_seed(0)
        model = build(cfg, setup)
        step = make_step(model, setup, dtype, lr=1e-3)  # learns visibly in 30 steps
        losses = [
            step(x.to(setup.device), y.to(setup.device))
            for x, y in learnable_batches(cfg.vocab_size, batch, cfg.block_size, setup.loss_steps)
        ]
        out.append(float(torch.stack(losses[-5:]).mean()))
        torch.set_float32_matmul_precision(prec)
        del model, step
    return out[0], out[1]


# ---------------------------------------------------------------------------- decode
def decode_tokens_per_s(cfg: ModelConfig, setup: Setup, compiled: bool) -> float:
    torch.manual_seed(0)
    model = build(cfg, setup).to(dtype=torch.bfloat16).eval()
    step = compile_decode_step(model, backend=setup.backend) if compiled else None
    prompt = [torch.randint(0, cfg.vocab_size, (128 if not setup.smoke else 8,)).tolist()]
    n = setup.decode_tokens

    def run(tokens: int) -> list[float]:
        stamps = []
        for _ in stream(model, prompt, tokens, SamplingParams(temperature=0), decode_step=step):
            sync(setup.device)
            stamps.append(time.perf_counter())
        return stamps

    run(min(n, 16))  # warm-up (and compilation) outside the clock
    stamps = run(n)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])  # prefill excluded


# ---------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, toy sizes, seconds")
    p.add_argument("--max-batch", type=int, default=32, help="cap on the sized micro-batch")
    p.add_argument("--loss-steps", type=int, default=30, help="steps of the bf16 vs fp32 check")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["train", "lightning", "precision", "decode", "loss_memory", "optimizer"],
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[str]:
    args = parse(argv)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_suite.py needs CUDA; run `python benchmarks/gpu_suite.py --smoke` on CPU"
        )
    setup = Setup(args)
    if args.smoke:
        args.loss_steps = min(args.loss_steps, 6)
        setup.loss_steps = args.loss_steps
    else:
        torch.set_float32_matmul_precision("high")  # TF32, as nextok does on CUDA
    name, peak = peak_flops(setup.device)
    rows = ["| check | model | result | target |", "|---|---|---|---|"]
    started = time.perf_counter()
    timings: list[str] = []

    def section(label: str, t0: float) -> None:
        timings.append(f"{label} {time.perf_counter() - t0:.0f} s")

    if "train" not in args.skip:
        for label, cfg in setup.models.items():
            t0 = time.perf_counter()
            batch = size_micro_batch(cfg, setup)
            plain = plain_loop(cfg, batch, setup)
            tps, mem = plain["tokens_per_s"], plain["peak_bytes"]
            fpt = _flops_per_token(cfg)
            mfu = f"{100 * tps * fpt / peak:.1f}%" if peak else "n/a (no peak for this device)"
            where = f"{label} @ {cfg.block_size}, micro-batch {batch}"
            rows.append(
                f"| train tokens/s (bf16, compiled, fused AdamW) | {where} | "
                f"{tps:,.0f} tok/s, MFU {mfu}, peak memory {mem / 2**30:.1f} GiB | "
                f"MFU >= {TARGETS[label]:.0%} |"
            )
            if "lightning" not in args.skip:
                lit = lightning_loop(cfg, batch, setup)
                rows.append(
                    f"| Lightning path / plain loop (tokens/s) | {where} | "
                    f"{lit / tps:.3f} ({lit:,.0f} vs {tps:,.0f} tok/s) | >= 0.97 |"
                )
            release(setup)
            section(label, t0)
    if "precision" not in args.skip:
        t0 = time.perf_counter()
        cfg = setup.models["gpt2-small"]
        fp32, bf16 = bf16_vs_fp32(cfg, setup)
        rows.append(
            f"| bf16 vs fp32 loss after {setup.loss_steps} steps (fixed stream) | "
            f"gpt2-small @ {cfg.block_size} | fp32 {fp32:.4f}, bf16 {bf16:.4f}: "
            f"{100 * abs(bf16 - fp32) / fp32:.3f}% apart | <= 2% |"
        )
        release(setup)
        section("precision", t0)
    if "decode" not in args.skip:
        t0 = time.perf_counter()
        cfg = setup.models["llama-1b"]
        eager = decode_tokens_per_s(cfg, setup, compiled=False)
        comp = decode_tokens_per_s(cfg, setup, compiled=True)
        rows.append(
            f"| KV-cached decode, batch 1, bf16 | llama-1b | eager {eager:,.1f} tok/s, "
            f"compiled {comp:,.1f} tok/s ({comp / eager:.2f}x) | |"
        )
        release(setup)
        section("decode", t0)
    if "loss_memory" not in args.skip:
        t0 = time.perf_counter()
        shape = (
            "--vocab 4096 --batch 2 --seq 32 --layers 1 --d-model 32 --heads 2 --kv-heads 1 "
            "--rounds 1 --steps 1 --chunk-rows 16"
            if args.smoke
            else "--vocab 128256 --batch 4 --seq 2048 --layers 2 --d-model 2048 --heads 32 "
            "--kv-heads 8 --dtype bfloat16 --rounds 3 --steps 3"
        )
        lm_args = loss_memory.parse(f"--device {setup.device.type} {shape}".split())
        res = loss_memory.measure(lm_args)
        ref = res["plain"]["seconds"]
        detail = ", ".join(
            f"{k} {v['peak_ratio']:.2f}x / {v['seconds'] / ref:.2f}x time" for k, v in res.items()
        )
        rows.append(
            f"| LM loss peak memory / one fp32 logits tensor, time vs plain | vocab "
            f"{lm_args.vocab:,}, {lm_args.batch} x {lm_args.seq:,} tokens | {detail} | "
            "chunked <= 1.0x |"
        )
        section("loss memory", t0)
    if "optimizer" not in args.skip:
        t0 = time.perf_counter()
        cfg = setup.models["llama-1b"]
        what = f"llama-1b, fwd + bwd (bf16 autocast) of 1 x {cfg.block_size}"
        if not hasattr(torch.optim, "Muon"):
            rows.append(
                f"| optimizer step, Muon + AdamW | {what} | n/a: torch.optim.Muon needs torch >= 2.9 | |"
            )
        else:
            med = optimizer_step.measure(
                cfg,
                1,
                2 if args.smoke else 3,
                1 if args.smoke else 3,
                setup.device,
                amp=setup.amp_dtype,
            )
            fb, adamw = med["fwd + bwd"], med["AdamW"]
            fp32 = "fp32 (TF32 matmuls)" if setup.device.type == "cuda" else "fp32"
            detail = ", ".join(
                f"NS {label} {med[k] * 1e3:,.1f} ms ({med[k] / adamw:.1f}x AdamW, "
                f"{med[k] / fb:.2f}x fwd + bwd)"
                for label, k in (("bf16", optimizer_step.BF16), (fp32, optimizer_step.FP32))
            )
            rows.append(
                f"| optimizer step, Muon + AdamW (fp32 weights) | {what} | "
                f"AdamW {adamw * 1e3:,.1f} ms, {detail} | |"
            )
        release(setup)
        section("optimizer", t0)
    total = time.perf_counter() - started
    header = [
        f"command: python {shlex.join(sys.argv)}",
        f"device: {name}; dense bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else f"device: {name}",
        f"date: {datetime.date.today().isoformat()}; torch {torch.__version__}; "
        f"wall time {total:.0f} s ({'; '.join(timings)})",
        "",
    ]
    lines = header + rows
    print("\n".join(lines), flush=True)
    return lines


def _flops_per_token(cfg: ModelConfig) -> float:
    with torch.device("meta"):
        return Transformer(cfg).flops_per_token(cfg.block_size)


if __name__ == "__main__":
    main()
