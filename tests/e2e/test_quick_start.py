"""The README's quick start, as a new user runs it: its first command's ``nextok-train`` and then
every command of its "Then:" block, exactly as printed (only ``<timestamp>`` filled in)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start_commands() -> tuple[str, list[str]]:
    """(the ``nextok-train`` of the first command, the commands of the "Then:" block)."""
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    first = blocks[0].strip().splitlines()[0]
    train = first.split("&&")[-1].strip()
    then = section.split("Then:", 1)[1]
    follow = re.findall(r"```bash\n(.*?)```", then, re.S)[0].strip().splitlines()
    return train, follow


def test_readme_quick_start_parses():
    train, follow = quick_start_commands()
    assert train == "nextok-train"
    assert [c.split()[0] for c in follow] == ["nextok-generate", "nextok-eval", "nextok-export"]
    assert all("<timestamp>" in c for c in follow)


def _sh(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def rows_loss(run: Path) -> str:
    """The last logged val/loss of a run: its final, whole-split validation."""
    rows = [
        r
        for r in csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open())
        if r.get("val/loss")
    ]
    return rows[-1]["val/loss"]


@pytest.mark.slow
def test_readme_quick_start_runs_verbatim(tmp_path):
    train, follow = quick_start_commands()
    t0 = time.monotonic()
    proc = _sh(train, tmp_path, timeout=1800)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((tmp_path / "runs" / "default").iterdir())
    assert len(runs) == 1
    final = [ln for ln in proc.stdout.splitlines() if ln.startswith("[nextok] final val loss")]
    assert len(final) == 1 and "on the whole held-out split" in final[0]
    print(f"\nquick start: nextok-train took {wall:.0f} s\n{final[0]}")
    assert "stopped by max_time" not in proc.stdout
    # the default recipe (Muon, 252 steps of 16 x 128 tokens) measured 3.8759 with one thread
    # (docs/speedrun.md); the previous default 4.4578, experiment=default_v1 (AdamW) 4.80
    assert float(final[0].split()[4]) < 3.95, final[0]
    outputs = {}
    for command in follow:
        command = command.replace("<timestamp>", runs[0].name)
        p = _sh(command, tmp_path, timeout=600)
        assert p.returncode == 0, f"{command}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        outputs[command.split()[0]] = p
        print(f"$ {command}\n{p.stdout[-600:]}{p.stderr[-600:]}")
    assert outputs["nextok-generate"].stdout.startswith("def ")
    assert "error" not in outputs["nextok-generate"].stderr
    ckpt = f"runs/default/{runs[0].name}/checkpoints/last.ckpt"
    table = [ln.split() for ln in outputs["nextok-eval"].stdout.splitlines() if ln.startswith(ckpt)]
    assert table and abs(float(table[0][1]) - float(rows_loss(runs[0]))) < 1e-4 + 5e-5  # 4 decimals
    # the same evaluation as JSON, for the full precision
    p = _sh(f"nextok-eval ckpt={ckpt} json=true tasks=[]", tmp_path, timeout=600)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert abs(result["loss"] - float(rows_loss(runs[0]))) < 1e-4  # the final, whole-split one
    assert f"({result['tokens']:,} tokens)" in final[0]
    assert (tmp_path / "hf_model" / "model.safetensors").exists()
