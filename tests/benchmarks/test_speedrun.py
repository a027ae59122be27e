"""benchmarks/speedrun.py on a tiny budget: two real recipes, interleaved, and what it reports
agrees with the runs' own logs."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import tiny_args

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speedrun.py"


def val_losses(run: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open())
    return [(int(r["step"]), float(r["val/loss"])) for r in rows if r.get("val/loss")]


@pytest.mark.slow
def test_speedrun_reports_loss_time_to_target_and_ratio(tmp_path):
    # the tiny model (no run dir, validation left to the benchmark: whole split every 4 steps)
    skip = ("hydra.run.dir", "data.max_val_batches", "trainer.val_check_interval", "callbacks.")
    tiny = [a for a in tiny_args(tmp_path)[1:] if not a.startswith(skip)]
    tiny += [f"data.cache_dir={tmp_path / 'cache'}", "data.val_batch_size=256"]
    cmd = [sys.executable, str(SCRIPT), "default", "--repeats", "1", "--val-every", "4"]
    cmd += ["--target", "6.3", "--threads", "1", "--out", str(tmp_path / "runs"), "--set", *tiny]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("command: benchmarks/speedrun.py default") or "speedrun.py default" in out
    assert re.search(r"^machine: .*threads 1; load average [\d.]+ [\d.]+ [\d.]+$", out, re.M)
    rows = re.findall(
        r"^\| (default(?:_v1)?) \| 0 \| ([\d.]+) \| [\d.]+ \| (\d+) \| [\d.]+ \| (.+?) \|",
        out,
        re.M,
    )
    assert [r[0] for r in rows] == ["default_v1", "default"], out  # baseline first
    for recipe, loss, steps, ttt in rows:
        vals = val_losses(tmp_path / "runs" / f"{recipe}-0")
        assert len(vals) == 3  # steps 4 and 8, then the final one: all on the whole split
        assert float(loss) == pytest.approx(vals[-1][1], abs=1e-4)
        assert steps == "8"
        reached = [(s, v) for s, v in vals if v <= 6.3]
        if reached:
            assert ttt.endswith(f"@ {min(reached[0][0], 7) + 1}"), (ttt, vals)
        else:
            assert ttt == "not reached"
    assert "time to 6.30: default / default_v1 = " in out or "not reached" in out
