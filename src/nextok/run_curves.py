"""The training curves of a run, read from its CSV logs (``<run>/csv/version_*/metrics.csv``).

A run logs with Lightning's ``CSVLogger`` (the default ``logger=csv``); every start of the run,
first or resumed, writes the next ``version_N``. A resume redoes the steps after its checkpoint,
so a later version's value at a step replaces an earlier one's. The end of a run validates the
final weights on the whole held-out split and logs that as the last ``val/*`` row, usually at
the same step as the last periodic validation of a fixed subset: it is kept apart
(:attr:`RunCurves.final`) so a curve never mixes the two.

Plain Python (no torch, no Lightning): ``nextok-plot`` and notebooks read runs with it.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# metric -> what a plot calls it; the order is the order of the panels
METRICS: dict[str, str] = {
    "train/loss": "train loss",
    "val/loss": "val loss (fixed subset)",
    "val/bpb": "val bits per byte",
    "train/lr": "learning rate (train/lr: first param group)",
}
VAL_TOKENS = "val/tokens"
_VERSION = re.compile(r"version_(\d+)$")


@dataclass
class RunCurves:
    """One run's curves: ``curves[metric] = (steps, values)``, steps increasing; ``final[metric]``
    = ``(step, value)`` of the end-of-run whole-split validation (a run with a single validation:
    that one), when the run got there."""

    run_dir: Path
    curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    final: dict[str, tuple[int, float]] = field(default_factory=dict)


def metric_files(run_dir: Path) -> list[Path]:
    """The run's ``metrics.csv`` files, oldest version first (``version_10`` after ``version_2``)."""
    found = []
    for version in (run_dir / "csv").glob("version_*"):
        number = _VERSION.search(version.name)
        if number and (version / "metrics.csv").is_file():
            found.append((int(number.group(1)), version / "metrics.csv"))
    return [path for _, path in sorted(found)]


def _no_run(run_dir: Path) -> str:
    """Why ``run_dir`` cannot be read, with the run folders below it when it is a parent."""
    if not run_dir.exists():
        return f"{run_dir} does not exist"
    if not run_dir.is_dir():
        return f"{run_dir} is not a folder (expected a run dir such as runs/default/<timestamp>)"
    below = sorted(p.parent.parent.parent for p in run_dir.glob("*/csv/version_*/metrics.csv"))
    hint = f"; it holds runs: {' '.join(str(p) for p in dict.fromkeys(below))}" if below else ""
    return (
        f"{run_dir} holds no run: no csv/version_*/metrics.csv in it (runs log there with the "
        f"default logger=csv){hint}"
    )


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {text!r} is not finite")
    return value


def read_run(run_dir: str | Path) -> RunCurves:
    """The curves of :data:`METRICS` in ``run_dir``; ValueError naming the folder, file, row and
    column when it holds no run or a value that is not a number."""
    run_dir = Path(run_dir)
    files = metric_files(run_dir) if run_dir.is_dir() else []
    if not files:
        raise ValueError(_no_run(run_dir))
    points: dict[str, dict[int, float]] = {m: {} for m in METRICS}
    val_rows: list[tuple[int, dict[str, float], str | None]] = []
    for path in files:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "step" not in reader.fieldnames:
                raise ValueError(f"{path} has no 'step' column: not a Lightning CSV log")
            for line, row in enumerate(reader, start=2):
                where = f"{path} line {line}"
                step = int(_number(row["step"] or "nan", f"{where} column step"))
                values = {m: _number(row[m], f"{where} column {m}") for m in METRICS if row.get(m)}
                if "val/loss" in values:
                    val_rows.append((step, values, row.get(VAL_TOKENS)))
                    continue
                for metric, value in values.items():
                    points[metric][step] = value  # a resume's redone step replaces the old one
    run = RunCurves(run_dir)
    if val_rows:
        subset = val_rows[0][2]  # periodic validations cover the same fixed subset every time
        step, values, tokens = val_rows[-1]
        if tokens != subset or len(val_rows) == 1:
            run.final = {m: (step, v) for m, v in values.items() if m.startswith("val/")}
            val_rows.pop()
        for step, values, tokens in val_rows:
            if (
                tokens == subset
            ):  # an earlier whole-split row (a run resumed past its end) is left out
                for metric, value in values.items():
                    points[metric][step] = value
    for metric, by_step in points.items():
        if by_step:
            steps = sorted(by_step)
            run.curves[metric] = (steps, [by_step[s] for s in steps])
    if not run.curves and not run.final:
        raise ValueError(f"{files[-1]} holds no logged {', '.join(METRICS)} yet")
    return run
