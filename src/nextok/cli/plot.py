"""``nextok-plot``: the training curves of one or several runs in one PNG, from their CSV logs.

    nextok-plot runs/default/2026-12-05_18-00-00              # -> curves.png
    nextok-plot runs/adamw runs/muon out=adamw_vs_muon.png    # two runs, one figure
    python -m nextok.cli.plot ...                             # same without the script

Four panels (train loss, val loss, val bits per byte, learning rate), one line per run in each
panel that run logged; the end-of-run validation on the whole held-out split is a separate
marker, since it covers other tokens than the periodic validations. For users of the default
CSV logger who have no dashboard; matplotlib is the optional extra ``plot``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from nextok.cli.errors import CliError, one_line_errors

PROG = "nextok-plot"
USAGE = f"usage: {PROG} RUN_DIR [RUN_DIR ...] [out=FILE.png]"
DEFAULT_OUT = "curves.png"


@dataclass(frozen=True)
class PlottedLine:
    """What one line object of the figure holds: its panel (metric), legend label and data."""

    metric: str
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


def parse_args(argv: list[str]) -> tuple[list[Path], Path]:
    """(run dirs, output file) from ``RUN_DIR ... [out=FILE]``."""
    runs: list[Path] = []
    out = Path(DEFAULT_OUT)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "out":
            if not value:
                raise CliError(f"out= is empty; {USAGE}")
            out = Path(value)
        elif sep and "/" not in key and not Path(arg).exists():
            raise CliError(f"unknown key {key!r} (the only key is out=FILE); {USAGE}")
        else:
            runs.append(Path(arg))
    if not runs:
        raise CliError(f"no run dir given; {USAGE}")
    if out.suffix.lower() != ".png":
        raise CliError(f"out={out}: expected a .png file")
    if out.is_dir():
        raise CliError(f"out={out} is a folder; expected a .png file")
    return runs, out


def labels(runs: list[Path]) -> list[str]:
    """Short, distinct legend labels: the shortest path tails that tell the runs apart."""
    parts = [run.resolve().parts for run in runs]
    for n in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-n:]) for p in parts]
        if len(set(tails)) == len(tails):
            return tails
    return [str(run) for run in runs]  # the same folder twice: as typed


def plot_runs(runs: list[Path], out: Path) -> list[PlottedLine]:
    """Write the figure of ``runs`` to ``out`` (PNG); returns the data of every line drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, none opened
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise CliError(f"matplotlib is not installed ({e}): pip install 'nextok[plot]'") from None
    from nextok.io import atomic_write
    from nextok.run_curves import METRICS, read_run

    read = [read_run(run) for run in runs]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), layout="constrained")
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, title) in zip(axes.flat, METRICS.items(), strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        for i, (run, label) in enumerate(zip(read, labels(runs), strict=True)):
            color = cycle[i % len(cycle)]
            if metric in run.curves:
                steps, values = run.curves[metric]
                ax.plot(
                    steps, values, color=color, label=label, marker="." if len(steps) < 30 else None
                )
            if metric in run.final:
                step, value = run.final[metric]
                ax.plot(
                    [step],
                    [value],
                    color=color,
                    marker="*",
                    markersize=11,
                    linestyle="",
                    label=f"{label}: final, whole held-out split",
                )
        if metric == "train/lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    drawn = [
        PlottedLine(
            metric,
            line.get_label(),
            tuple(map(float, line.get_xdata())),
            tuple(map(float, line.get_ydata())),
        )
        for ax, metric in zip(axes.flat, METRICS, strict=True)
        for line in ax.lines
    ]
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=80, pil_kwargs={"optimize": True}))
    plt.close(fig)
    return drawn


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{__doc__}")
        return 0
    with one_line_errors(PROG, interrupted="interrupted"):
        runs, out = parse_args(argv)
        drawn = plot_runs(runs, out)
        print(f"[nextok] {out}: {len(drawn)} lines from {len(runs)} run(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
