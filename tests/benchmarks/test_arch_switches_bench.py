"""benchmarks/arch_switches.py: the command runs and prints a ratio row per switch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "arch_switches.py"


def test_prints_a_row_per_switch(tmp_path):
    args = ["--switches", "doc_mask", "unet_skips", "--seq", "32", "--vocab", "256"]
    args += ["--rounds", "1", "--steps", "1", "--warmup", "1", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("command: python ") and "load average" in out
    rows = re.findall(r"^\| ([\w=]+) \| [\d.]+ \| ([\d.]+) \|$", out, flags=re.MULTILINE)
    assert [r[0] for r in rows] == ["plain", "doc_mask", "unet_skips"] and rows[0][1] == "1.000"
