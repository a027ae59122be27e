"""Slurm preemption: on SIGUSR1, checkpoint at the next optimizer-step boundary and requeue.

Lightning's own SLURM auto-requeue saves the checkpoint *inside* the signal handler, i.e. at
whatever point the signal interrupts (mid-forward, between the optimizer step and the counters,
with the other rank somewhere else), and the requeued run can skip a step. This
callback only sets a flag in the handler; after the next optimizer step all ranks agree on the
flag (a max all-reduce), save ``<run_dir>/hpc_ckpt_N.ckpt`` together (Lightning's name, so
``resume=auto`` and Lightning both find it) and stop; when the loop has ended (metrics logged),
rank 0 runs ``scontrol requeue``.
The requeued job keeps its SLURM_JOB_ID, hence its run directory, and resumes exactly.

Installed by ``slurm/train.sbatch`` (``+callbacks.slurm_requeue=...``); a no-op outside Slurm.
Because it registers its handler in ``setup`` (before the Trainer installs its signal handlers),
Lightning's in-handler save is not installed for the same signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from nextok.console import say
from nextok.lit.lightning_private import hpc_save_path


def in_slurm_job() -> bool:
    """A batch job step (not an interactive shell allocation)."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )


def job_id() -> str:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


class SlurmRequeue(Callback):
    """Checkpoint + ``scontrol requeue`` at a step boundary after ``signal_name`` arrives."""

    def __init__(self, signal_name: str = "SIGUSR1", requeue: bool = True) -> None:
        try:
            self.signum = signal.Signals[signal_name]
        except KeyError as e:
            raise ValueError(
                f"callbacks.slurm_requeue.signal_name: unknown signal {signal_name!r}"
            ) from e
        self.requeue = requeue
        self.received = False
        self.active = False
        self._last_step = -1
        self._requeue_pending = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = True  # acted on at the next step boundary, never inside the handler

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.active = stage == "fit" and in_slurm_job()
        if self.active:
            self._previous = signal.signal(self.signum, self._handler)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.active and self._previous is not None:
            signal.signal(self.signum, self._previous)
        self.active = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.active or trainer.global_step == self._last_step:
            return  # only right after an optimizer step (not between accumulation micro-batches)
        self._last_step = trainer.global_step
        flag = torch.tensor(float(self.received), device=pl_module.device)
        if trainer.world_size > 1:  # every rank must take the same branch
            flag = trainer.strategy.reduce(flag, reduce_op="max")
        if not flag.item():
            return
        path = hpc_save_path(trainer)
        trainer.save_checkpoint(path)
        say(f"{self.signum.name}: saved {path} at step {trainer.global_step}")
        self._requeue_pending = True
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Requeue once the loop has stopped, so this step's metrics reach the loggers first
        (the requeue kills the job at once)."""
        if not self._requeue_pending:
            return
        self._requeue_pending = False
        for logger in trainer.loggers:
            logger.save()
        if trainer.is_global_zero and self.requeue:
            result = subprocess.run(["scontrol", "requeue", job_id()], check=False)
            say(f"scontrol requeue {job_id()}: exit {result.returncode}")
