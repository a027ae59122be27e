"""benchmarks/paged_attention.py: FlexAttention reading the pool in place computes what the
engine's gather + SDPA computes, and the script prints a timed, interleaved round."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow  # compiles flex_attention with inductor (~10 s of CPU)
def test_flex_matches_gather_and_reports_a_ratio(tmp_path):
    args = ["--batch", "5", "--min-len", "3", "--max-len", "70", "--pool", "3"]
    args += ["--rounds", "1", "--iters", "2", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "paged_attention.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    diff = float(re.search(r"largest difference ([\d.e+-]+)", proc.stdout).group(1))
    assert diff < 1e-5  # the same attention, up to float rounding
    assert re.search(r"round 1: per layer: gather \+ SDPA [\d.]+ ms, flex [\d.]+ ms", proc.stdout)
