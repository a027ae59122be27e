"""``nextok-plot`` on real runs: the PNG is written and the lines drawn hold exactly the logged
values (checked on the line objects' data, not on pixels); a folder without a run is one line."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.cli import ENV, cli, console_cmd, ok, one_line_error, tiny_args
from nextok.cli.plot import plot_runs

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plot(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*console_cmd("nextok-plot", "nextok.cli.plot"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=cwd,
    )


def logged(run: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) rows of ``key`` in the run's CSV logs, in the order written."""
    rows = []
    for f in sorted((run / "csv").glob("version_*/metrics.csv")):
        rows += [(int(r["step"]), float(r[key])) for r in csv.DictReader(f.open()) if r.get(key)]
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real 8-step run: train/loss and lr every step, validations at steps 4 and 8, then the
    final whole-split validation."""
    run = tmp_path_factory.mktemp("plot") / "run"
    ok(cli("nextok-train", *tiny_args(run, None, "callbacks.sampling=null", "tasks=[]")))
    return run


def by_metric(lines) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in lines:
        out.setdefault(line.metric, []).append(line)
    return out


def test_plot_of_a_real_run(run, tmp_path):
    proc = ok(plot(str(run), "out=fig.png", cwd=tmp_path))
    assert (tmp_path / "fig.png").read_bytes()[:8] == PNG_MAGIC
    assert proc.stdout.strip() == "[nextok] fig.png: 6 lines from 1 run(s)", proc.stdout

    lines = by_metric(plot_runs([run], tmp_path / "again.png"))
    for key in ("train/loss", "train/lr"):
        (line,) = lines[key]
        rows = logged(run, key)
        assert len(rows) == 8
        assert list(zip(line.x, line.y, strict=True)) == rows
    for key in ("val/loss", "val/bpb"):
        rows = logged(run, key)  # two periodic validations, then the whole split at the end
        assert len(rows) == 3 and rows[0][0] < rows[1][0] <= rows[2][0]
        curve, final = lines[key]
        assert list(zip(curve.x, curve.y, strict=True)) == rows[:2]
        assert list(zip(final.x, final.y, strict=True)) == rows[2:]
        assert final.label.endswith("final, whole held-out split")


def test_plot_of_two_runs(run, tmp_path):
    other = tmp_path / "other" / "run"
    shutil.copytree(run, other)
    lines = by_metric(plot_runs([run, other], tmp_path / "two.png"))
    assert (tmp_path / "two.png").read_bytes()[:8] == PNG_MAGIC
    assert [len(lines[k]) for k in ("train/loss", "val/loss", "val/bpb", "train/lr")] == [
        2,
        4,
        4,
        2,
    ]
    labels = {line.label for line in lines["train/loss"]}
    assert len(labels) == 2  # told apart by their paths


def test_a_folder_without_a_run_is_one_line(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(plot(str(empty), cwd=tmp_path), 2, f"nextok-plot: error: {empty} holds no run")
    # a run and a parent of runs: nothing is drawn, the parent's line names the runs in it
    proc = plot(str(run), str(run.parent), cwd=tmp_path)
    one_line_error(proc, 2, f"{run.parent} holds no run", f"it holds runs: {run}")
    assert not (tmp_path / "curves.png").exists()
    one_line_error(plot(str(tmp_path / "missing")), 2, "missing does not exist")
    one_line_error(plot(str(run), "out=x.pdf"), 2, "out=x.pdf: expected a .png file")
    one_line_error(plot(str(run), "colour=red"), 2, "unknown key 'colour'")


@pytest.mark.slow
def test_a_resumed_run_is_one_curve(tmp_path):
    """4 steps, then resume=auto to 8: two CSV versions, one curve of 8 distinct steps."""
    run = tmp_path / "run"
    args = tiny_args(run, None, "callbacks.sampling=null", "tasks=[]")
    ok(cli("nextok-train", *args, "trainer.max_steps=4"))
    ok(cli("nextok-train", *args, "resume=auto"))
    assert len(list((run / "csv").glob("version_*/metrics.csv"))) == 2
    lines = by_metric(plot_runs([run], tmp_path / "resumed.png"))
    (loss,) = lines["train/loss"]
    assert len(loss.x) == 8 and list(loss.x) == sorted(set(loss.x))
    assert list(zip(loss.x, loss.y, strict=True)) == logged(run, "train/loss")
