"""slurm/submit builds the right sbatch command (dry run: no Slurm needed)."""

from __future__ import annotations

import shlex
import subprocess

from helpers.slurm import SUBMIT


def _dry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SUBMIT), "--dry-run", *args], capture_output=True, text=True)


def test_multi_node_gpu_command():
    proc = _dry(
        "--nodes",
        "4",
        "--gpus-per-node",
        "8",
        "--partition",
        "gpu",
        "--account",
        "proj",
        "--time",
        "2-00:00:00",
        "--trainer",
        "fsdp",
        "--",
        "model=llama_1b",
        "seed=3",
    )
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout)
    assert "NEXTOK_TRAINER=fsdp" in words and "NEXTOK_ACCELERATOR=gpu" in words
    for opt in (
        "--nodes=4",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--partition=gpu",
        "--account=proj",
        "--time=2-00:00:00",
        "--requeue",
        "--signal=SIGUSR1@90",
    ):
        assert opt in words, (opt, words)
    i = next(i for i, w in enumerate(words) if w.endswith("train.sbatch"))
    assert words[i + 1 :] == ["model=llama_1b", "seed=3"]  # Hydra overrides follow the template


def test_cpu_command_and_errors():
    cpu = shlex.split(_dry("--cpu", "--", "trainer.max_steps=5").stdout)
    assert "--gpus-per-node=0" in cpu and "--ntasks-per-node=2" in cpu
    assert "NEXTOK_TRAINER=ddp_sim" in cpu and "NEXTOK_ACCELERATOR=cpu" in cpu
    bad = _dry("--gpus-per-node", "4", "--ntasks-per-node", "2")
    assert bad.returncode != 0 and "one task per GPU" in bad.stderr
    notoverride = _dry("--", "model")
    assert notoverride.returncode != 0 and "is not a Hydra override" in notoverride.stderr
