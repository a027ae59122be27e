"""Ctrl-C / SIGTERM in every phase of a run: stop promptly, save what a resume needs, exit 130/143.

The contract (``nextok-train``; tested in ``tests/e2e/test_signal_phases.py``):

- during training, the first signal finishes the current optimizer step (never between
  accumulated micro-batches), saves ``last.ckpt`` with the exact mid-epoch data position, and
  stops: no validation at the stop step, no samples, no tasks, no final validation (that
  end-of-run work belongs to the resumed run that finishes);
- before training (tokenizer training, caching, checkpoint restore) and after it (final
  whole-split validation, samples, tasks) there is no step to finish: the first signal stops at
  once (``last.ckpt`` of the final step is already written);
- a second signal stops at once in any phase; every file is written atomically (temp + rename),
  so nothing is half-written, and a later start removes the temp files such a stop leaves;
- the exit status is always ``128 + signum`` (130 SIGINT, 143 SIGTERM), never 0 or 1.

One :class:`SignalGuard` owns SIGINT/SIGTERM for the whole run (installed before any work);
:class:`GracefulStop` tells it the phase and turns a pending signal into a stop at the step
boundary. Lightning installs its own SIGTERM handler at each ``fit``/``validate`` (it would log
"Received SIGTERM" and raise its own exception later): the callback re-installs the guard's.
Lightning's own teardown at the end of each ``fit``/``validate`` runs with signals held (acted on
when it is done): it is not re-entrant, and a stop raised inside it would turn into a traceback
and exit 1. Under Slurm auto-requeue SIGTERM is Lightning's (it follows the requeue's SIGUSR1).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L

from nextok.lit.callbacks.base import AfterBatch
from nextok.lit.lightning_private import cluster_environment, is_accumulating, teardown_inside

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """The run stopped on a signal; the CLI exits with ``128 + signum``.

    A ``BaseException`` (as ``KeyboardInterrupt`` is) so that no ``except Exception`` on the way
    turns it into another error; not a ``KeyboardInterrupt``, whose Lightning path exits 1.
    ``phase``: "setup" (before training), "train" (at a step boundary, after saving), "end"
    (during the end-of-run work); ``at_once``: a second signal cut the graceful stop short."""

    def __init__(self, signum: int, phase: str, step: int | None, at_once: bool = False) -> None:
        self.signum = signum
        self.phase = phase
        self.step = step
        self.at_once = at_once
        super().__init__(self.describe())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def describe(self) -> str:
        name = signal.Signals(self.signum).name
        if self.phase == "setup":
            return f"{name}: stopped before training began"
        if self.at_once:
            return f"{name} again: stopped at once at step {self.step}"
        if self.phase == "end":
            return f"{name}: stopped after the last step ({self.step}), before the end-of-run work"
        return f"{name}: stopped after step {self.step}"


class SignalGuard:
    """SIGINT/SIGTERM handler for one run (main thread): ``with SignalGuard() as guard: ...``.

    In the "train" phase the first signal is only recorded (:class:`GracefulStop` acts on it at
    the step boundary), and inside :meth:`held` it is acted on when that ends; any other signal
    raises :class:`StopRequested` where the main thread is. A signal after that exception was
    raised, or a second one inside :meth:`held`, exits the process at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.phase = "setup"
        self.step: int | None = None
        self.sigterm_is_lightnings = False  # Slurm auto-requeue
        self._raised = False
        self._holding = False
        self._held: int | None = None  # a signal that arrived inside held()
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> SignalGuard:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self.handler)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def reinstall(self) -> None:
        """Take SIGINT/SIGTERM back from whatever Lightning registered since."""
        for sig in self._previous:
            if sig == signal.SIGTERM and self.sigterm_is_lightnings:
                continue
            signal.signal(sig, self.handler)

    def handler(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker (Ctrl-C reaches the whole process group): the
            # run's own process stops and shuts it down
        if signum == signal.SIGTERM and self.sigterm_is_lightnings:
            return
        if self._raised:
            os._exit(128 + signum)  # a third signal: the stop is already under way, end now
        if self._holding:
            if self._held is not None or (self.phase == "train" and self.signum is not None):
                os._exit(128 + signum)  # a second signal: at once (raising here is not safe)
            self._held = signum
            return
        if self.phase == "train" and self.signum is None:
            self.signum = signum  # acted on at the step boundary (printing here could reenter)
            return
        at_once = self.signum is not None and self.phase == "train"
        self.signum = signum
        self._raised = True
        raise StopRequested(signum, self.phase, self.step, at_once=at_once)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Code that must not be cut short by an exception (Lightning's teardown): a signal
        arriving inside raises :class:`StopRequested` when it ends (unless it raised itself)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._held is not None:
            signum, self._held = self._held, None
            self.signum = signum
            self._raised = True
            raise StopRequested(signum, self.phase, self.step)

    def stop_now(self) -> StopRequested:
        """The exception for a graceful stop the guard recorded (raised by the caller)."""
        assert self.signum is not None
        self._raised = True
        return StopRequested(self.signum, "train", self.step)


class GracefulStop(AfterBatch):
    """Tell the guard the phase; turn a recorded signal into a save-and-stop at a step boundary.

    Put it first among the callbacks: its ``on_train_end`` must run before the samples and tasks
    of other callbacks, which a stopped run skips."""

    def __init__(self, guard: SignalGuard, started: Callable[[], None] | None = None) -> None:
        """``started``: called when training begins (the run dir is then kept on failure)."""
        self.guard = guard
        self._started = started
        self.stopping = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        env = cluster_environment(trainer)
        self.guard.sigterm_is_lightnings = isinstance(env, SLURMEnvironment) and env.auto_requeue
        teardown_inside(trainer, self.guard.held)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.guard.reinstall()  # Lightning registered its SIGTERM handler just before this hook
        self.guard.step = trainer.global_step
        self.guard.phase = "train"
        if self._started is not None:
            self._started()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.training:  # trainer.validate(): Lightning registered its handler again
            self.guard.reinstall()

    def after_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int) -> None:
        if is_accumulating(trainer):
            return
        self.guard.step = trainer.global_step
        if self.guard.signum is not None and not self.stopping:
            self.stopping = True
            # ModelCheckpoint (Lightning runs checkpoint callbacks last) saves last.ckpt now;
            # no validation at the stop step (its best-* file would be unknown to last.ckpt)
            trainer.should_stop = True
            trainer.limit_val_batches = 0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.guard.step = trainer.global_step
        if self.stopping or self.guard.signum is not None:
            raise self.guard.stop_now()  # skips the other callbacks' samples and tasks
        self.guard.phase = "end"
