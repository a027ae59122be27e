"""Lightning's console noise is filtered, but not a hint that matters where it is given."""

import os
import stat
import warnings

import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment

from nextok.run.quiet import quiet_lightning


@pytest.fixture
def srun_on_path(tmp_path, monkeypatch):
    """A machine with Slurm installed: an ``srun`` executable on PATH."""
    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for var in ("SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)


def _srun_hints() -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_lightning()
        SLURMEnvironment._validate_srun_used()
    return [str(w.message) for w in seen if "srun" in str(w.message)]


def test_srun_hint_is_dropped_outside_an_allocation(srun_on_path):
    assert _srun_hints() == []


def test_srun_hint_stays_inside_an_allocation(srun_on_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    [hint] = _srun_hints()
    assert "prepend your python command with `srun`" in hint
