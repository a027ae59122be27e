"""Every shell block of every tutorial (``docs/tutorials/*.md``), run verbatim in order in a fresh
folder, as a reader would: the tutorials cannot rot. A block preceded by
``<!-- not run: REASON -->`` (a GPU, a download, a Slurm cluster) is shown but not run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
# the quick start's extractor (tests/e2e/test_quick_start.py), plus the optional marker
BLOCK = re.compile(r"(<!-- not run: [^>]+-->\n)?```bash\n(.*?)```", re.S)


def shell_blocks(page: Path) -> list[tuple[str, str | None]]:
    """(block, why it is not run or None) for every ``bash`` block of ``page``, in order."""
    found = BLOCK.findall(page.read_text())
    return [
        (code, re.search(r"not run: ([^>]+?) ?-->", m).group(1) if m else None) for m, code in found
    ]


def console_scripts_dir(tmp_path: Path) -> Path:
    """A folder of stand-ins for the console scripts that are not installed (an editable install
    made before a script was added): ``name`` runs its entry point with this Python."""
    shims = tmp_path / "_bin"
    shims.mkdir()
    scripts = re.findall(
        r'^(nextok-[\w-]+) = "([\w.]+):(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M
    )
    for name, module, func in scripts:
        if shutil.which(name) is None:
            shim = shims / name
            shim.write_text(
                f'#!/bin/sh\nexec "{sys.executable}" -c '
                f"'import sys; from {module} import {func}; sys.exit({func}())' \"$@\"\n"
            )
            shim.chmod(0o755)
    return shims


def test_every_tutorial_has_blocks_to_run():
    assert [p.stem for p in TUTORIALS] == [
        "compare-recipes",
        "continue-hf",
        "multi-gpu",
        "own-text",
    ]
    for page in TUTORIALS:
        blocks = shell_blocks(page)
        assert any(why is None for _, why in blocks), page
        assert len(blocks) == page.read_text().count("```bash"), (
            f"{page}: a bash block the pattern missed"
        )


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_verbatim(page, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "slurm").symlink_to(ROOT / "slurm")  # the tutorials run from a checkout's root
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(console_scripts_dir(tmp_path)), os.environ["PATH"]]
    )
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1"}
    for code, why in shell_blocks(page):
        if why is not None:
            print(f"\n(not run: {why})\n{code}")
            continue
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        print(f"\n$ {code}{proc.stdout[-1500:]}{proc.stderr[-800:]}")
        assert proc.returncode == 0, (
            f"{page.name}:\n{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
        )
