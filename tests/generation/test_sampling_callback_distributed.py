"""SamplingCallback under DDP and FSDP2 (2 CPU processes): rank 0 samples, nobody deadlocks.

Slow: each run starts 2 Lightning processes (~40-80 s on a loaded 2-core machine).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("dist_sampling_script.py")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_rank_zero_samples_with_full_weights(tmp_path, strategy):
    env = dict(os.environ, OMP_NUM_THREADS="1", PL_DISABLE_FORK="1")
    r = subprocess.run(
        [sys.executable, str(SCRIPT), strategy, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2
    history = result["history"]
    assert [(h["step"], h["prompt"]) for h in history] == [
        (1, "def "),
        (1, "import os"),
        (2, "def "),
        (2, "import os"),
    ]
    # lr=0: the weights stay the seeded init, so rank 0's samples (from its DDP replica, or from
    # the full weights gathered out of the FSDP2 shards) equal an unsharded copy's
    assert [h["text"] for h in history[2:]] == result["reference"]
    assert [h["text"] for h in history[:2]] == result["reference"]
    assert r.stdout.count("samples at step") == 2
    with open(next(tmp_path.glob("lightning_logs/version_*/samples.csv")), newline="") as f:
        assert len(list(csv.reader(f))) == 1 + 4
