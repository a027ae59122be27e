"""The console scripts as subprocesses: runners, result checks and a tiny real training run."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

MODULES = {
    "nextok-train": "nextok.train",
    "nextok-eval": "nextok.cli.evaluate",
    "nextok-generate": "nextok.cli.generate",
    "nextok-export": "nextok.cli.export",
    "nextok-consolidate": "nextok.cli.consolidate",
    "nextok-serve": "nextok.cli.serve",
    "nextok-plot": "nextok.cli.plot",
}
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def console_cmd(name: str, module: str | None = None) -> list[str]:
    """The installed console script, or ``python -m module`` when it is not on PATH."""
    exe = shutil.which(name)
    return [exe] if exe else [sys.executable, "-m", module or MODULES[name]]


def cli(name: str, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run one of the console scripts (``nextok-train``, ``nextok-eval``, ...) to completion."""
    return subprocess.run(
        [*console_cmd(name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kw.pop("env", ENV),
        **kw,
    )


def tiny_args(run_dir: Path, tok: Path | None = None, *extra: str) -> list[str]:
    """A 1-layer model on the stdlib corpus: a few seconds of training."""
    return [
        f"hydra.run.dir={run_dir}",
        "model.n_layer=1",
        "model.d_model=32",
        "model.n_head=2",
        "model.n_kv_head=2",
        "model.block_size=32",
        "data.batch_size=4",
        "data.max_val_batches=2",
        "data.val_batch_size=64",  # the final whole-split validation in few batches
        "data.vocab_size=512",
        *([f"data.tokenizer_path={tok}"] if tok else []),
        "data.tokenizer_train_bytes=300000",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=4",
        "schedule.warmup_steps=2",
        "schedule.total_steps=20",
        "trainer.max_steps=8",
        "callbacks.sampling.max_new_tokens=8",
        *extra,
    ]


def metrics(run_dir: Path, key: str = "train/loss") -> dict[int, str]:
    """step -> value (as written) over all CSV versions of a run (a resume adds a version)."""
    out: dict[int, str] = {}
    for f in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        with f.open() as fh:
            out.update({int(r["step"]): r[key] for r in csv.DictReader(fh) if r.get(key)})
    return out


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The single stderr line of a failed command (asserting its exit code and content)."""
    assert proc.returncode == code, (
        f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def compose(config_name: str, *overrides: str):
    """A CLI's composed Hydra config (what its main receives), to call its ``run`` in-process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nextok.cli._conf import conf_dir

    with initialize_config_dir(conf_dir(), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))
