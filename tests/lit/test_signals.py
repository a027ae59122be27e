"""The signal contract phase by phase, with real signals sent to this process (the end-to-end
runs through ``nextok-train`` are in ``tests/e2e/test_signal_phases.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import lightning as L
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from torch.utils.data import DataLoader, TensorDataset

from helpers.trainer import quiet_trainer
from nextok.cli.train import resume_command
from nextok.run.signals import GracefulStop, SignalGuard, StopRequested


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode boundary


@pytest.mark.parametrize("phase", ["setup", "end"])
def test_outside_training_the_first_signal_stops_at_once(phase):
    with SignalGuard() as guard:
        guard.phase = phase
        with pytest.raises(StopRequested) as e:
            _send(signal.SIGTERM)
    assert (e.value.exit_code, e.value.phase, e.value.at_once) == (143, phase, False)


def test_in_training_the_first_signal_waits_for_the_step_the_second_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with SignalGuard() as guard:
        guard.phase, guard.step = "train", 7
        _send(signal.SIGINT)  # recorded only: the callback stops at the step boundary
        assert guard.signum == signal.SIGINT
        with pytest.raises(StopRequested) as e:
            _send(signal.SIGINT)
    assert (e.value.exit_code, e.value.at_once) == (130, True)
    assert str(e.value) == "SIGINT again: stopped at once at step 7"
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("run_dir", ["runs/plain", "/tmp/my runs/a b", "/tmp/it's,odd=[x]"])
def test_resume_command_survives_a_shell_and_hydra(run_dir):
    from pathlib import Path

    overrides = ["data=local_text", "data.data_files=/d/my corpus.txt", "resume=auto"]
    cmd = resume_command("nextok-train", Path(run_dir), overrides)
    argv = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {cmd.removeprefix('nextok-train ')}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert argv[:2] == overrides[:2] and argv[-1] == "resume=auto" and len(argv) == 4
    parsed = OverridesParser.create().parse_overrides([argv[2]])[0]
    assert parsed.key_or_group == "hydra.run.dir" and parsed.value() == run_dir


def _child_gets_sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)  # a StopRequested here would end the child with status 1


def test_a_forked_dataloader_worker_leaves_the_stop_to_the_run():
    import multiprocessing

    with SignalGuard() as guard:
        guard.phase = "end"  # where the run itself would stop at once
        child = multiprocessing.get_context("fork").Process(target=_child_gets_sigint)
        child.start()
        child.join(30)
    assert child.exitcode == 0


class _SignalOnReset(DataLoader):
    """A loader that sends SIGTERM to this process when Lightning's teardown resets it (sets
    ``_iterator``) once ``armed``: the signal lands inside ``Trainer._teardown``. Armed on the
    class: Lightning may rebuild the loader it was given (the same class, a new instance)."""

    armed = False

    @property
    def _iterator(self):
        return self.__dict__.get("_it")

    @_iterator.setter
    def _iterator(self, value) -> None:
        self.__dict__["_it"] = value
        if type(self).armed and value is None:
            type(self).armed = False
            _send(signal.SIGTERM)


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _ArmAtTheEnd(L.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        _SignalOnReset.armed = True


def test_a_signal_inside_lightnings_teardown_stops_once_it_is_done(tmp_path):
    """Lightning's teardown is not re-entrant: a stop raised inside it made its second teardown
    fail ("Please call `iter(combined_loader)` first") and the run exit 1 with a traceback."""
    loader = _SignalOnReset(TensorDataset(torch.ones(8, 2)), batch_size=2)
    _SignalOnReset.armed = False
    with SignalGuard() as guard:
        trainer = quiet_trainer(
            tmp_path, max_steps=3, callbacks=[GracefulStop(guard), _ArmAtTheEnd()]
        )
        with pytest.raises(StopRequested) as e:
            trainer.fit(_Tiny(), train_dataloaders=loader)
    assert (e.value.exit_code, e.value.phase, e.value.at_once, e.value.step) == (
        143,
        "end",
        False,
        3,
    )
