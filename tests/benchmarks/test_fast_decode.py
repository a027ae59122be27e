"""benchmarks/fast_decode.py: the command runs and prints a row per variant and batch size."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fast_decode.py"


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="needs torchao")
def test_prints_rows_and_bandwidth(tmp_path):
    args = ["--presets", "tiny", "--variants", "plain", "int8", "--batches", "1", "2"]
    args += ["--repeats", "1", "--new-tokens", "3", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("command: python ") and "preset tiny (random weights)" in out
    rows = re.findall(
        r"^\| (plain|int8) \| (\d) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \| ([\d.]+)x \|",
        out,
        flags=re.MULTILINE,
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("plain", "1"),
        ("int8", "1"),
        ("plain", "2"),
        ("int8", "2"),
    ]
    plain, int8 = rows[0], rows[1]
    assert plain[4] == "1.00" and float(int8[3]) < float(plain[3]) / 3  # bytes read per step
    assert re.search(r"copy bandwidth .*: best [\d.]+ GB/s", out)
