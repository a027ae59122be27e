"""Reading a run's CSV logs (``nextok.run_curves``): version order, redone steps, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextok.run_curves import read_run

HEADER = "epoch,step,train/loss,train/lr,val/loss,val/tokens\n"


def version(run: Path, n: int, rows: str) -> None:
    (run / "csv" / f"version_{n}").mkdir(parents=True)
    (run / "csv" / f"version_{n}" / "metrics.csv").write_text(HEADER + rows)


def test_later_versions_win_in_numeric_order(tmp_path):
    # version_10 is newer than version_2 (a string sort would put it first)
    version(tmp_path, 2, "0,0,5.0,0.1,,\n0,1,4.0,0.1,,\n0,1,,,4.5,64\n")
    version(tmp_path, 10, "0,1,3.0,0.2,,\n0,2,2.0,0.2,,\n0,2,,,3.5,64\n0,2,,,3.9,640\n")
    run = read_run(tmp_path)
    assert run.curves["train/loss"] == ([0, 1, 2], [5.0, 3.0, 2.0])
    assert run.curves["val/loss"] == ([1, 2], [4.5, 3.5])  # the fixed subset (64 tokens)
    assert run.final == {"val/loss": (2, 3.9)}  # the whole split (640 tokens), kept apart


def test_a_value_that_is_not_a_number_names_file_line_and_column(tmp_path):
    version(tmp_path, 0, "0,0,5.0,0.1,,\n0,1,oops,0.1,,\n")
    with pytest.raises(ValueError, match=r"version_0/metrics.csv line 3 column train/loss: 'oops'"):
        read_run(tmp_path)


def test_a_csv_that_is_not_a_lightning_log_is_refused(tmp_path):
    (tmp_path / "csv" / "version_0").mkdir(parents=True)
    (tmp_path / "csv" / "version_0" / "metrics.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="has no 'step' column"):
        read_run(tmp_path)
