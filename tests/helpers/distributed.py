"""Helpers for multi-process tests (also used by tests/slurm): they run the real ``nextok-train`` CLI in subprocesses.

In-process DDP inside pytest would re-run the pytest session in the child ranks (see design.md),
so every distributed run here is a separate ``nextok-train`` process tree.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
import torch

from helpers.cli import console_cmd

TINY_MODEL = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_kv_head=2",
    "model.d_model=32",
    "model.block_size=32",
]
QUIET = [
    "logger=none",
    "print_config=false",
    "callbacks.sampling=null",
    "callbacks.throughput=null",
    "callbacks.unigram_baseline=null",
    "callbacks.best_checkpoint=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "+trainer.limit_val_batches=0",
    "tasks=[]",
]


def train_cmd() -> list[str]:
    return console_cmd("nextok-train")


def test_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # A process group in the test runner's environment would confuse Lightning's launcher.
    for key in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "SLURM_JOB_ID",
        "SLURM_NTASKS",
        "SLURM_PROCID",
    ):
        env.pop(key, None)
    return env


def run_train(overrides: list[str], timeout: float = 600) -> tuple[str, float]:
    """Run nextok-train; return (combined output, seconds). Fails the test with the output tail."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [*train_cmd(), *overrides],
        env=test_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parent,
    )
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"nextok-train {' '.join(overrides)} exited {proc.returncode}:\n{out[-4000:]}")
    return out, seconds


def write_corpus(path: Path, size: int = 150_000) -> Path:
    """~``size`` characters of real text (stdlib sources): enough blocks, seconds to tokenize."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for f in sorted(root.glob("*.py")):
        text = f.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total > size:
            break
    path.write_text("\n".join(parts))
    return path


def data_overrides(corpus: Path, tokenizer: Path | None = None) -> list[str]:
    tok = (
        [f"data.tokenizer_path={tokenizer}"]
        if tokenizer
        else ["data.vocab_size=512", "data.tokenizer_train_bytes=200000"]
    )
    return ["data.source=text", f"+data.data_files={corpus}", "data.document_unit=line", *tok]


def eval_loss(ckpt, text: str, n: int = 8, t: int = 32) -> float:
    """Mean next-token loss of a loaded checkpoint on ``n`` windows of real ``text``."""
    ids = torch.tensor(ckpt.tokenizer.encode(text).ids[: n * (t + 1)]).view(n, t + 1)
    with torch.no_grad():
        return float(ckpt.model.float()(ids[:, :-1], ids[:, 1:])[1])
