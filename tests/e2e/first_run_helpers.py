"""A tiny real ``nextok-train`` run and CLI runners shared by the first-run / fault tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from e2e_helpers import console_cmd

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def cli(name: str, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run one of the console scripts (``nextok-train``, ``nextok-eval``, ...) to completion."""
    module = {
        "nextok-train": "nextok.train",
        "nextok-eval": "nextok.cli.evaluate",
        "nextok-generate": "nextok.cli.generate",
        "nextok-export": "nextok.cli.export",
        "nextok-consolidate": "nextok.cli.consolidate",
    }[name]
    return subprocess.run(
        [*console_cmd(name, module), *args],
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
