"""benchmarks/speculative.py end to end on a tiny self-draft pair (training skipped: the runs
exist): every nextok speculative row gives plain's tokens, a self-draft keeps every guess, and
the decode-only column and the prefill line are printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers.checkpoints import write_checkpoint

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_self_draft_and_lookup_rows(tmp_path):
    for name in ("target", "draft"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        write_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt", block_size=128)
    args = ["--work", str(tmp_path), "--prompts", "2", "--prompt-tokens", "40"]
    args += ["--new-tokens", "12", "--repeats", "1", "--k", "3", "--lookup-k", "2"]
    args += ["--draft-confidence-threshold", "0", "--no-hf"]
    args += ["--variants", "plain", "draft", "prompt lookup"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "speculative.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    row = r"^\| {} \| [\d.]+ \| [\d.]+x \| {} \| {} \| [^|]+ \| plain \|"
    assert re.search(row.format("plain", "-", "-"), out, re.M), out
    assert re.search(row.format("draft k=3", r"[\d.]+x", "100%"), out, re.M), out
    assert re.search(row.format("prompt lookup k=2", r"[\d.]+x", r"(\d+%|-)"), out, re.M), out
    assert re.search(r"^prefill: the target's forward over the 2 prompts takes [\d.]+ s", out, re.M)
