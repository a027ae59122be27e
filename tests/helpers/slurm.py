"""Polling helpers for the Slurm tests (scontrol/squeue against the local cluster)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
}
SUBMIT = Path(__file__).resolve().parents[2] / "slurm" / "submit"


def job_field(env: dict[str, str], job_id: str, field: str) -> str | None:
    """A field (e.g. ``JobState``, ``Restarts``) of ``scontrol show job``, or None if unknown."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True
    ).stdout
    for item in out.split():
        key, _, value = item.partition("=")
        if key == field:
            return value
    return None


def wait_for_job(env: dict[str, str], job_id: str, timeout: float, states=TERMINAL) -> str:
    """Poll until the job reaches one of ``states``; returns that state."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = job_field(env, job_id, "JobState")
        if state in states:
            return state
        time.sleep(0.5)
    subprocess.run(["scancel", job_id], env=env)
    raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f} s")
