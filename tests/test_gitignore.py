"""What the README's commands write into a checkout is ignored by git (run outputs, exports)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
@pytest.mark.parametrize(
    "path",
    [
        "runs/default/2026-11-28_10-00-00/checkpoints/last.ckpt",
        "hf_model/model.safetensors",
        "hf_model/config.json",
        "hf_llama/tokenizer.json",
        "eval.json",
        "outputs/x.log",
        "runs/x/checkpoints/last.consolidated.pt",
        "multirun/a/0/config.yaml",
    ],
)
def test_outputs_are_ignored(path):
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
