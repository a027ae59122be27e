"""Ctrl-C / SIGTERM during training: finish the optimizer step, save ``last.ckpt``, exit 130/143.

Without this, SIGINT raised ``KeyboardInterrupt`` in the middle of a step and the run exited 1
without saving: every step since the last periodic checkpoint was lost. The handler only records
the signal; at the end of the current optimizer step (never between accumulated micro-batches)
the callback sets ``trainer.should_stop``, and nextok's ``ModelCheckpoint`` saves ``last`` with the
exact mid-epoch data position, as a periodic save would, so ``resume=auto`` continues exactly.
A second signal while the first is handled stops at once (the default action).
"""

from __future__ import annotations

import signal
from typing import Any

import lightning as L

from nextok.lit.compat import cluster_environment, is_accumulating

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """Training stopped on a signal after saving; the CLI exits with ``128 + signum``."""

    def __init__(self, signum: int, step: int) -> None:
        self.signum = signum
        self.step = step
        name = signal.Signals(signum).name
        super().__init__(f"{name}: stopped after step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop(L.Callback):
    """Turn SIGINT/SIGTERM into a save-and-stop at the next optimizer-step boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(
            signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_train_start runs after Lightning registered its own SIGTERM handler, so ours wins;
        # under Slurm auto-requeue SIGTERM stays Lightning's (it follows the requeue's SIGUSR1)
        from lightning.fabric.plugins.environments import SLURMEnvironment

        env = cluster_environment(trainer)
        slurm = isinstance(env, SLURMEnvironment) and env.auto_requeue
        for sig in SIGNALS:
            if slurm and sig == signal.SIGTERM:
                continue
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                return

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.signum is not None and not is_accumulating(trainer):
            trainer.should_stop = True  # ModelCheckpoint (runs after this callback) saves last

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) in (self._handler, signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, previous)
        self._previous.clear()
