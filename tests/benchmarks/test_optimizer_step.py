"""benchmarks/optimizer_step.py: the command runs and prints one row per step kind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "optimizer_step.py"


def test_prints_every_row(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--steps", "1", "--seq", "16"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("command: python ") and "preset tiny" in out
    rows = dict(
        re.findall(r"^\| ([^|]+) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \|$", out, flags=re.MULTILINE)
    )
    assert set(rows) == {
        "fwd + bwd",
        "AdamW",
        "Muon + AdamW, Newton-Schulz fp32",
        "Muon + AdamW, Newton-Schulz fp32, one matrix at a time",
        "Muon + AdamW, Newton-Schulz bf16",
    }
    assert all(float(ms) > 0 for ms in rows.values())
