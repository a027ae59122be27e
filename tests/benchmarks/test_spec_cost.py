"""benchmarks/spec_cost.py: the speedup model of speculative decoding, and the command on a pair
whose draft is the target itself (every proposal accepted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.checkpoints import write_checkpoint

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def spec_cost():
    sys.path.insert(0, str(BENCH))
    try:
        import spec_cost
    finally:
        sys.path.remove(str(BENCH))
    return spec_cost


def test_tokens_per_round_and_acceptance_needed(spec_cost):
    assert spec_cost.tokens_per_round(0.0, 4) == 1.0
    assert spec_cost.tokens_per_round(1.0, 4) == 5.0
    assert spec_cost.tokens_per_round(0.5, 1) == pytest.approx(1.5)
    # free draft, verify as cheap as a step: 1.8x needs E = 1.8 tokens a round
    need = spec_cost.acceptance_needed(1.8, 1, 1.0)
    assert spec_cost.tokens_per_round(need, 1) == pytest.approx(1.8, abs=1e-6)
    assert need == pytest.approx(0.8, abs=1e-6)
    # a round costing 3 target steps can give at most 5 / 3 < 1.8 tokens per step at k = 4
    assert spec_cost.acceptance_needed(1.8, 4, 3.0) is None


def test_command_on_a_self_draft_accepts_everything(tmp_path):
    for name in ("target", "draft"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        write_checkpoint(tmp_path / name / "checkpoints" / "last.ckpt", block_size=128)
    args = ["--work", str(tmp_path), "--ks", "1", "3", "--prompts", "1", "--prompt-tokens", "40"]
    args += ["--new-tokens", "9", "--repeats", "1", "--rounds", "2"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "spec_cost.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\| (\d) \| (\d+)% \| ([\d.]+) \| [\d.]+ \| [\d.]+x \|", proc.stdout, re.M)
    assert rows == [("1", "100", "2.00"), ("3", "100", "4.00")]  # 9 = 1 + rounds (k + 1)
    assert re.search(r"draft step [\d.]+ ms \(c = [\d.]+\); verify v_k: k=1 ", proc.stdout)
