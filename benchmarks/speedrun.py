"""The CPU speedrun: named recipes against a baseline recipe, interleaved, on the default corpus.

Each recipe is an experiment name (``conf/experiment/<name>.yaml``) trained by the real
``nextok-train``, in the order baseline, recipe, baseline, recipe, ... (``--repeats`` rounds), so a
change of the machine's load hits both alike. Per run it reports:

- the final validation loss (and bits/byte) on the whole held-out split after the recipe's own
  budget (its ``trainer.max_steps``): deterministic for a given thread count;
- the time to target: the training time (validation excluded, as ``train/time`` of the throughput
  monitor counts it) at the first validation whose loss is at or below ``--target``. Every
  validation covers the whole held-out split (``data.max_val_batches=null``), every
  ``--val-every`` steps, so the time is as fine-grained as that interval;
- the ratio of the recipe's time to the baseline's of the same round, and the wall-clock time of
  the whole command (tokenizer, data, training, validations).

The end-of-run downstream evaluation and samples are turned off (``tasks=[]``,
``callbacks.sampling=null``): they do not change training and cost minutes.

    python benchmarks/speedrun.py default                  # the default against default_v1
    python benchmarks/speedrun.py default --repeats 2 --target 4.5 --threads 2
    python benchmarks/speedrun.py default --set trainer.max_steps=100   # any override, all runs
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Run:
    """One training run's figures (times in seconds)."""

    recipe: str
    round: int
    final_loss: float | None = None
    final_bpb: float | None = None
    steps: int = 0
    train_s: float | None = None
    target_s: float | None = None
    target_step: int | None = None
    wall_s: float = 0.0
    load: str = ""
    error: str = ""
    vals: list[tuple[int, float]] = field(default_factory=list)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("recipes", nargs="+", help="experiment names to measure (conf/experiment/)")
    p.add_argument("--baseline", default="default_v1", help="the recipe every ratio is against")
    p.add_argument("--target", type=float, default=4.80, help="whole-split val loss to reach")
    p.add_argument("--repeats", type=int, default=1, help="rounds of baseline + recipes")
    p.add_argument("--val-every", type=int, default=100, help="steps between validations")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every run")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, all runs")
    p.add_argument("--out", type=Path, default=None, help="run directories (default: a temp dir)")
    return p.parse_args()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def read_metrics(run_dir: Path, run: Run, target: float) -> None:
    """Validations, training time and the time to target, from the run's CSV log."""
    times: dict[int, float] = {}
    for row in csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()):
        step = int(row["step"])
        if row.get("train/time"):
            times[step] = float(row["train/time"])
        if row.get("val/loss"):
            run.vals.append((step, float(row["val/loss"])))
            if row.get("val/bpb"):
                run.final_bpb = float(row["val/bpb"])
    if not run.vals or not times:
        raise RuntimeError(f"{run_dir}: no validation or no train/time in metrics.csv")
    run.steps = max(times) + 1
    run.train_s = times[max(times)]
    run.final_loss = run.vals[-1][1]  # the final validation on the whole split
    for step, loss in run.vals:
        if loss <= target:
            # the final validation (after fit) is logged one step past the last batch
            run.target_step = min(step, max(times)) + 1
            run.target_s = times[min(step, max(times))]
            break


def train(recipe: str, rnd: int, args: argparse.Namespace, out: Path) -> Run:
    run = Run(recipe, rnd, load=load_average())
    run_dir = out / f"{recipe}-{rnd}"
    cmd = [
        *console("nextok-train"),
        f"experiment={recipe}",
        f"hydra.run.dir={run_dir}",
        "tasks=[]",
        "callbacks.sampling=null",
        "data.max_val_batches=null",
        "data.val_batch_size=32",
        f"trainer.val_check_interval={args.val_every}",
        "trainer.enable_progress_bar=false",
        *args.set,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    run.wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "HYDRA_FULL" not in ln]
        run.error = (lines or ["(no output)"])[-1]
        return run
    read_metrics(run_dir, run, args.target)
    return run


def console(name: str) -> list[str]:
    """The console script of this Python environment (the one running the benchmark)."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", "nextok.train"]


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def report(runs: list[Run], args: argparse.Namespace) -> list[str]:
    lines = [
        "| recipe | round | final loss | bits/byte | steps | train s | "
        f"time to {args.target:.2f} (s @ step) | ratio vs {args.baseline} | wall s | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {r.round: r for r in runs if r.recipe == args.baseline}
    ratios: dict[str, list[float]] = {}
    for r in runs:
        if r.error:
            lines.append(f"| {r.recipe} | {r.round} | failed: {r.error} |")
            continue
        b = base.get(r.round)
        ratio = None
        if r.target_s is not None and b is not None and b.target_s:
            ratio = r.target_s / b.target_s
            ratios.setdefault(r.recipe, []).append(ratio)
        ttt = "not reached" if r.target_s is None else f"{r.target_s:.1f} @ {r.target_step}"
        lines.append(
            f"| {r.recipe} | {r.round} | {fmt(r.final_loss, '.4f')} | {fmt(r.final_bpb, '.4f')} "
            f"| {r.steps} | {fmt(r.train_s)} | {ttt} | {fmt(ratio, '.2f')} | {r.wall_s:.1f} "
            f"| {r.load} |"
        )
    for recipe, rs in ratios.items():
        if recipe != args.baseline:
            lines.append(
                f"time to {args.target:.2f}: {recipe} / {args.baseline} = "
                f"{statistics.median(rs):.2f} (median of {len(rs)} rounds)"
            )
    return lines


def main() -> None:
    args = parse()
    order = [args.baseline] + [r for r in args.recipes if r != args.baseline]
    cpu = cpu_name()
    print(f"command: {shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(
        f"machine: {platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}; threads {args.threads}; load average {load_average()}"
    )
    print(
        f"target {args.target:.2f} on the whole held-out split, validated every "
        f"{args.val_every} steps; order: {' '.join(order)} x {args.repeats}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="speedrun-") as tmp:
        out = args.out or Path(tmp)
        runs = []
        for rnd in range(args.repeats):
            for recipe in order:
                runs.append(train(recipe, rnd, args, out))
                print(f"  {recipe} round {rnd}: {runs[-1].wall_s:.1f} s", flush=True)
    print("\n".join(report(runs, args)))
    print(f"load average at the end: {load_average()}")
    sys.exit(1 if any(r.error for r in runs) else 0)


if __name__ == "__main__":
    main()
