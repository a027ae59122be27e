"""Faults a user meets (issue 9), through the real ``nextok-train``: resume pairing weights with
another tokenizer, two runs in one dir, Ctrl-C / SIGTERM, leftover temp files, stale locks."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import time

import pytest
import torch
from e2e_helpers import console_cmd
from first_run_helpers import ENV, cli, ok, one_line_error, tiny_args


def losses(run_dir, key="train/loss") -> dict[int, str]:
    out: dict[int, str] = {}
    for f in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        out.update({int(r["step"]): r[key] for r in csv.DictReader(f.open()) if r.get(key)})
    return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return {"root": root, "cache": root / "cache"}


def test_resume_uses_the_checkpoints_tokenizer_or_refuses(shared, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ok(
        cli(
            "nextok-train",
            *tiny_args(
                a,
                None,
                "trainer.max_steps=4",
                "callbacks.sampling=null",
                f"data.cache_dir={shared['cache']}",
            ),
        )
    )
    # ckpt_path into a new run dir: the checkpoint's tokenizer is used, none is trained
    proc = ok(
        cli(
            "nextok-train",
            *tiny_args(
                b,
                None,
                "trainer.max_steps=6",
                "callbacks.sampling=null",
                f"ckpt_path={a / 'checkpoints' / 'last.ckpt'}",
                f"data.cache_dir={shared['cache']}",
            ),
        )
    )
    assert "using the tokenizer embedded in" in proc.stdout
    assert json.loads((b / "tokenizer.json").read_text()) == json.loads(
        (a / "tokenizer.json").read_text()
    )
    assert sorted(losses(b)) == [4, 5]  # continued from step 4
    # a run dir whose tokenizer.json is another run's: refused in one line
    other = json.loads((a / "tokenizer.json").read_text())
    vocab = other["model"]["vocab"]
    k1, k2 = list(vocab)[300:302]
    vocab[k1], vocab[k2] = vocab[k2], vocab[k1]  # two ids swapped: silently wrong if accepted
    (a / "tokenizer.json").write_text(json.dumps(other))
    one_line_error(
        cli("nextok-train", *tiny_args(a, None, "trainer.max_steps=6", "resume=auto")),
        2,
        f"{a / 'tokenizer.json'} is not the tokenizer the weights in",
    )


def _wait_for(path, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def _popen(args):
    return subprocess.Popen(
        [*console_cmd("nextok-train", "nextok.train"), *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_lock_signals_and_exact_resume(shared, tmp_path):
    """Slow (5 training runs, ~45 s on idle cores)."""
    run = tmp_path / "run"
    base = tiny_args(
        run,
        None,
        "callbacks.sampling=null",
        f"data.cache_dir={shared['cache']}",
        "schedule=constant",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )
    first = _popen([*base, "trainer.max_steps=100000"])
    try:
        _wait_for(run / "checkpoints" / "last.ckpt", first)  # training is under way
        # a second run in the same dir fails at once, naming the owner
        t0 = time.monotonic()
        second = cli("nextok-train", *base, "trainer.max_steps=3")
        one_line_error(second, 2, f"is in use by pid {first.pid} on {socket.gethostname()}")
        assert time.monotonic() - t0 < 120
        # Ctrl-C: the step finishes, last.ckpt is saved, exit 130
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-3000:]
    assert "SIGINT: stopped after step" in err and "resume=auto" in err
    step1 = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert step1 >= 1 and "Traceback" not in err
    # kill -9 leftovers: a temp file of a cut save, and a lock whose process is gone
    (run / "checkpoints" / ".last.ckpt.tmp-4242").write_bytes(b"partial")
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
        resumed.send_signal(signal.SIGTERM)  # SIGTERM: the same, exit 143
        out, err = resumed.communicate(timeout=180)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 143, err[-3000:]
    assert f"took over the stale lock of pid {dead.pid}" in out
    assert "removed 1 temp file(s) of an interrupted write: checkpoints/.last.ckpt.tmp-4242" in out
    assert not list((run / "checkpoints").glob(".*.tmp-*")) and not (run / ".nextok.lock").exists()
    step2 = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert step2 > step1
    ok(cli("nextok-train", *base, f"trainer.max_steps={step2 + 2}", "resume=auto"))
    # exactly the losses of one uninterrupted run of the same length
    ref = tmp_path / "ref"
    ok(
        cli(
            "nextok-train",
            *tiny_args(
                ref,
                None,
                "callbacks.sampling=null",
                "schedule=constant",
                f"data.cache_dir={shared['cache']}",
                f"trainer.max_steps={step2 + 2}",
            ),
        )
    )
    assert losses(run) == losses(ref)
    assert len(losses(ref)) == step2 + 2
