"""benchmarks/gpu_suite.py: the ``--smoke`` run on CPU exercises every section of the suite."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_suite.py"


def _suite():
    sys.path.insert(0, str(SUITE.parent))
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_peak_table():
    suite = _suite()
    assert suite.peak_for_name("NVIDIA H100 80GB HBM3") == 989e12
    assert suite.peak_for_name("NVIDIA H200") == 989e12
    assert suite.peak_for_name("NVIDIA H100 PCIe") == 756e12
    assert suite.peak_for_name("NVIDIA A100-SXM4-80GB") == 312e12
    assert suite.peak_for_name("NVIDIA GeForce RTX 4090") is None  # MFU then says n/a


def test_smoke_run_prints_every_row(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SUITE), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "command: python" in out and "device: cpu" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| check | model | result | target |"
    table = "\n".join(rows)
    for model in ("gpt2-small", "llama-1b"):
        assert re.search(
            rf"\| train tokens/s .*\| {model} @ 32, micro-batch 2 \| [\d,]+ tok/s", table
        )
        assert re.search(
            rf"\| Lightning path / plain loop .*\| {model} .*\| \d+\.\d{{3}} \(", table
        )
    assert re.search(r"fp32 \d+\.\d{4}, bf16 \d+\.\d{4}: \d+\.\d+% apart", table)
    assert re.search(r"eager [\d,.]+ tok/s, compiled [\d,.]+ tok/s", table)
    assert re.search(r"plain \d+\.\d\dx / 1\.00x time, chunked \d+\.\d\dx", table)
    assert re.search(
        r"\| optimizer step, Muon \+ AdamW .*\| AdamW [\d.]+ ms, NS bf16 [\d.]+ ms \([\d.]+x AdamW, "
        r"[\d.]+x fwd \+ bwd\), NS fp32 [\d.]+ ms",
        table,
    )


def test_full_suite_refuses_without_cuda(tmp_path):
    if _suite().torch.cuda.is_available():  # pragma: no cover - GPU machines run the suite
        return
    proc = subprocess.run(
        [sys.executable, str(SUITE)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 1 and "needs CUDA" in proc.stderr and "--smoke" in proc.stderr
