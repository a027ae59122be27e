"""A real one-node Slurm cluster for the tests in this directory (see cluster.sh).

The ``slurm_cluster`` fixture starts the cluster when it can (root + Debian's Slurm packages) and
otherwise skips with the reason; a cluster that is already up (e.g. started by ``.ci/run``) is
reused and left running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER_SH = Path(__file__).resolve().parent / "cluster.sh"
SLURM_DIR = os.environ.get("NEXTOK_SLURM_DIR", "/tmp/nextok-slurm")
SLURM_CONF = f"{SLURM_DIR}/slurm.conf"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue")


def _missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]


def _status(env: dict[str, str]) -> bool:
    return subprocess.run([str(CLUSTER_SH), "status"], env=env, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster():
    """Environment (a dict for subprocesses) pointing the Slurm clients at the local cluster."""
    missing = _missing_binaries()
    if missing:
        pytest.skip(
            f"Slurm not installed (missing {', '.join(missing)}); "
            "apt-get install -y slurmctld slurmd slurm-client munge"
        )
    env = {**os.environ, "SLURM_CONF": SLURM_CONF, "NEXTOK_SLURM_DIR": SLURM_DIR}
    started_here = False
    if not _status(env):
        if os.geteuid() != 0:
            pytest.skip(
                "a local Slurm cluster needs root (slurmd, munged); run as root or start "
                "tests/slurm/cluster.sh start beforehand"
            )
        proc = subprocess.run([str(CLUSTER_SH), "start"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"could not start the local Slurm cluster: {proc.stderr.strip()[-500:]}")
        started_here = True
    yield env
    if started_here:
        subprocess.run([str(CLUSTER_SH), "stop"], env=env, capture_output=True)
