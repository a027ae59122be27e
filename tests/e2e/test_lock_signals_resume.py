"""One run dir through a user's bad day, with the real ``nextok-train``: a second run started in
it while the first trains, Ctrl-C, the leftovers of a kill -9 (a temp file of a cut save, a lock
whose process is gone), SIGTERM, and a resume that must give the losses of one uninterrupted run.

The scenario runs once (five training runs) in a module fixture; each test asserts one behaviour.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers.cli import ENV, cli, console_cmd, metrics, ok, one_line_error, tiny_args

pytestmark = pytest.mark.slow  # five training runs, ~45 s on idle cores

TEMP = ".last.ckpt.tmp-4242"


@dataclass(frozen=True)
class Scenario:
    run: Path
    first_pid: int
    second: subprocess.CompletedProcess  # started while the first trains
    second_seconds: float
    sigint: tuple[int, str, str]  # exit code, stdout, stderr of the first run after Ctrl-C
    step_after_sigint: int
    dead_pid: int  # the pid in the planted stale lock
    sigterm: tuple[int, str, str]  # the resumed run after SIGTERM
    step_after_sigterm: int
    left_after_sigterm: list[str]  # temp files and the lock still there after SIGTERM
    reference: Path  # one uninterrupted run as long as the resumed one


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def _popen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [*console_cmd("nextok-train"), *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, str]:
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def _step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    root = tmp_path_factory.mktemp("lock_signals")
    run, cache = root / "run", root / "cache"
    common = ("callbacks.sampling=null", f"data.cache_dir={cache}", "schedule=constant")
    base = tiny_args(run, None, *common, "callbacks.last_checkpoint.every_n_train_steps=2")
    first = _popen([*base, "trainer.max_steps=100000"])
    try:
        _wait_for(run / "checkpoints" / "last.ckpt", first)  # training is under way
        t0 = time.monotonic()
        second = cli("nextok-train", *base, "trainer.max_steps=3")
        second_seconds = time.monotonic() - t0
    finally:
        sigint = _stop(first, signal.SIGINT)
    step1 = _step(run)
    # kill -9 leftovers: a temp file of a cut save, and a lock whose process is gone
    (run / "checkpoints" / TEMP).write_bytes(b"partial")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / ".nextok.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    resumed = _popen([*base, "trainer.max_steps=100000", "resume=auto"])
    try:
        _wait_for(run / "csv" / "version_1", resumed)
        saved = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
        deadline = time.monotonic() + 180
        while (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == saved:  # training again
            assert resumed.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        sigterm = _stop(resumed, signal.SIGTERM)
    step2 = _step(run)
    left = [p.name for p in (*run.glob("checkpoints/.*.tmp-*"), run / ".nextok.lock") if p.exists()]
    ok(cli("nextok-train", *base, f"trainer.max_steps={step2 + 2}", "resume=auto"))
    ref = root / "ref"
    ok(cli("nextok-train", *tiny_args(ref, None, *common, f"trainer.max_steps={step2 + 2}")))
    return Scenario(
        run, first.pid, second, second_seconds, sigint, step1, dead.pid, sigterm, step2, left, ref
    )


def test_a_second_run_in_the_same_dir_fails_at_once_naming_the_owner(scenario):
    owner = f"is in use by pid {scenario.first_pid} on {socket.gethostname()}"
    one_line_error(scenario.second, 2, owner)
    assert scenario.second_seconds < 120


def test_sigint_finishes_the_step_saves_last_ckpt_and_exits_130(scenario):
    code, _, err = scenario.sigint
    assert code == 130, err[-3000:]
    assert "SIGINT: stopped after step" in err and "resume=auto" in err
    assert "Traceback" not in err and scenario.step_after_sigint >= 1


def test_a_stale_lock_is_taken_over(scenario):
    _, out, _ = scenario.sigterm
    assert f"took over the stale lock of pid {scenario.dead_pid}" in out


def test_temp_files_of_an_interrupted_write_are_removed(scenario):
    _, out, _ = scenario.sigterm
    assert f"removed 1 temp file(s) of an interrupted write: checkpoints/{TEMP}" in out
    assert not [n for n in scenario.left_after_sigterm if ".tmp-" in n]


def test_sigterm_saves_last_ckpt_exits_143_and_releases_the_lock(scenario):
    code, _, err = scenario.sigterm
    assert code == 143, err[-3000:]
    assert scenario.step_after_sigterm > scenario.step_after_sigint
    assert ".nextok.lock" not in scenario.left_after_sigterm


def test_the_resumed_run_has_the_losses_of_one_uninterrupted_run(scenario):
    ref = metrics(scenario.reference)
    assert len(ref) == scenario.step_after_sigterm + 2
    assert metrics(scenario.run) == ref
