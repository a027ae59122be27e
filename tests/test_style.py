"""The tree is `ruff format`ted and `ruff check` clean (ruff is pinned in the dev extra)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "benchmarks"]


@pytest.mark.parametrize("args", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff_is_clean(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, f"ruff {' '.join(args)} failed:\n{out.stdout}{out.stderr}"
