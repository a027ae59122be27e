"""The real sbatch template on a real (local, one-node) Slurm cluster, submitted by slurm/submit.

CPU nodes: 2 tasks with gloo DDP. The run directory is <run-root>/<SLURM_JOB_ID> on every rank;
a SIGUSR1 (what Slurm sends before the time limit with --signal=SIGUSR1@90) makes Lightning save
an hpc checkpoint and requeue the job, which comes back under the same job id and resumes.
"""

from __future__ import annotations

import csv
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers.distributed import TINY_MODEL, data_overrides, train_cmd, write_corpus
from helpers.slurm import SUBMIT, job_field, wait_for_job
from nextok.checkpoint import load_checkpoint

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def _env(slurm_env: dict[str, str]) -> dict[str, str]:
    env = {**slurm_env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        env.pop(key)  # no outer job's variables
    return env


def _submit(env, run_root: Path, overrides: list[str], wait: bool) -> tuple[str, float]:
    cmd = [
        str(SUBMIT),
        "--cpu",
        "--ntasks-per-node",
        "2",
        "--job-name",
        "nextok-test",
        "--run-root",
        str(run_root),
        "--time",
        "10:00",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(
        [*cmd, *(["--wait"] if wait else []), "--", *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    job_id = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    log = run_root / f"slurm-{job_id}.out"
    if proc.returncode != 0 or not job_id:
        tail = log.read_text()[-4000:] if job_id and log.exists() else ""
        pytest.fail(f"slurm/submit failed ({proc.returncode}): {proc.stderr}\n{tail}")
    return job_id, time.monotonic() - t0


def _overrides(corpus: Path, steps: int, every: int) -> list[str]:
    return [
        *TINY_MODEL,
        *data_overrides(corpus),
        "data.batch_size=2",
        f"trainer.max_steps={steps}",
        f"callbacks.last_checkpoint.every_n_train_steps={every}",
        "callbacks.sampling=null",
        "callbacks.best_checkpoint=null",
        "callbacks.unigram_baseline=null",
        "print_config=false",
        "tasks=[]",
        "+trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


def test_submit_template_runs_two_task_ddp(slurm_cluster, corpus, tmp_path):
    env = _env(slurm_cluster)
    steps = 4
    job_id, seconds = _submit(env, tmp_path, [*_overrides(corpus, steps, 2), "logger=none"], True)
    print(f"Slurm 2-task DDP job, {steps} steps, submit -> done: {seconds:.1f} s")
    log = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert job_field(env, job_id, "JobState") == "COMPLETED", log[-3000:]
    run_dir = tmp_path / job_id
    assert f"run dir {run_dir}" in log
    assert "world size 2" in log, log[-3000:]  # both srun tasks joined one process group
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), f"no checkpoint in the SLURM_JOB_ID run dir: {log[-3000:]}"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] == steps
    # the checkpoint contract holds: generate/eval/export can read it
    loaded = load_checkpoint(ckpt)
    assert loaded.meta["tokens_seen"] == steps * 2 * 2 * 32  # steps x ranks x batch x block


def _train_steps(metrics_csv: Path) -> list[int]:
    with metrics_csv.open() as f:
        return sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")})


@pytest.mark.slow
def test_sigusr1_requeues_and_resumes(slurm_cluster, corpus, tmp_path):
    env = _env(slurm_cluster)
    steps = 300
    t0 = time.monotonic()
    job_id, _ = _submit(
        env,
        tmp_path,
        [*_overrides(corpus, steps, 10), "logger=csv", "trainer.log_every_n_steps=1"],
        False,
    )
    run_dir = tmp_path / job_id
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        state = job_field(env, job_id, "JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job_id} is {state}"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.5)
    # What Slurm does 90 s before the time limit (--signal=SIGUSR1@90): signal every task.
    subprocess.run(["scancel", "--signal=USR1", job_id], env=env, check=True)
    state = wait_for_job(env, job_id, timeout=500)
    seconds = time.monotonic() - t0
    print(f"Slurm requeue test: submit -> signal -> requeue -> done: {seconds:.1f} s")
    log = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert state == "COMPLETED", log[-4000:]
    assert job_field(env, job_id, "Restarts") == "1", log[-4000:]

    # The callback saved at a step boundary, requeued, and the job came back and resumed there.
    saved = re.search(r"\[nextok\] SIGUSR1: saved (\S+) at step (\d+)", log)
    assert saved, f"no preemption checkpoint: {log[-4000:]}"
    hpc, hpc_step = Path(saved.group(1)), int(saved.group(2))
    assert hpc.parent == run_dir and hpc.exists() and 0 < hpc_step < steps
    assert torch.load(hpc, map_location="cpu", weights_only=False)["global_step"] == hpc_step
    assert "restart 1 on" in log and re.search(rf"resuming from {run_dir}/\S+", log), log[-4000:]
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["global_step"] == steps

    # No step lost or repeated: attempt 1 logged steps 0..hpc_step-1, attempt 2 hpc_step..steps-1.
    first, second = (_train_steps(run_dir / "csv" / f"version_{v}" / "metrics.csv") for v in (0, 1))
    assert first == list(range(hpc_step)), (first[-3:], hpc_step)
    assert second == list(range(hpc_step, steps)), (second[:3], hpc_step)


@pytest.mark.slow
def test_submitit_launcher_sweep(slurm_cluster, corpus, tmp_path):
    """`-m hydra/launcher=submitit_slurm`: one Slurm job per sweep point, each trains and saves."""
    env = _env(slurm_cluster)
    sweep = tmp_path / "sweep"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            *train_cmd(),
            "-m",
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=debug",
            "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10",
            f"hydra.sweep.dir={sweep}",
            "logger=none",
            *_overrides(corpus, 2, 2),
            "seed=1,2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"submitit sweep, 2 jobs x 2 steps: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for job in ("0", "1"):
        ckpt = sweep / job / "checkpoints" / "last.ckpt"
        assert ckpt.is_file(), f"sweep point {job} wrote no checkpoint"
        assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 2
    # the two points really differ (seed=1 vs seed=2 -> different initial weights)
    a, b = (load_checkpoint(sweep / j / "checkpoints" / "last.ckpt").model for j in ("0", "1"))
    assert not torch.equal(a.tok_emb.weight, b.tok_emb.weight)
    assert len(list((sweep / ".submitit").glob("*_0"))) == 1  # a Slurm array job, not local runs
