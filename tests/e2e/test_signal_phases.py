"""Ctrl-C / SIGTERM through the real ``nextok-train``, sent at chosen phases (a log line tells when):
before training (caching), during training (once, twice), during the final validation. The
contract: exit 128 + signum (never 0 or 1), one line on stderr, no traceback, nothing half-written,
and a printed command that continues the run when pasted into a shell."""

from __future__ import annotations

import re
import signal
import subprocess
import sysconfig
import threading
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers.cli import ENV, console_cmd, tiny_args

QUICK = ["callbacks.sampling=null", "tasks=[]"]
TOKENIZER = {"tokenizer training": ["data.tokenizer_train_bytes=4000000"], "caching": []}


class Run:
    """``nextok-train`` in the background; its merged output read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*console_cmd("nextok-train", "nextok.train"), *args],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, ln) for ln in self.lines):
            assert self.proc.poll() is None, "exited before: " + "".join(self.lines)[-3000:]
            assert time.monotonic() < deadline, f"no {pattern!r}: " + "".join(self.lines)[-3000:]
            time.sleep(0.05)

    def wait_for_file(self, path: Path, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert self.proc.poll() is None, "exited before: " + "".join(self.lines)[-3000:]
            assert time.monotonic() < deadline, f"no {path}"
            time.sleep(0.05)

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(timeout=10)
        return code, "".join(self.lines)


def stop_line(out: str) -> str:
    """The one line a stopped run ends with."""
    assert "Traceback" not in out and "Detected KeyboardInterrupt" not in out, out[-3000:]
    assert "Received SIGTERM" not in out, out[-3000:]
    (line,) = [ln for ln in out.splitlines() if re.search(r"SIG(INT|TERM)\b.*: stopped", ln)]
    return line


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("signals") / "cache"


@pytest.mark.parametrize(
    ("phase", "after"),
    [
        ("tokenizer training", r"Seed set to"),  # on 4 MB: a few seconds
        ("caching", r"tokenizer \(vocab \d+\) saved to"),  # a fresh cache dir
    ],
)
def test_sigint_before_training_stops_at_once_and_removes_the_new_run_dir(tmp_path, phase, after):
    run, cache = tmp_path / "run", tmp_path / "cache"
    r = Run(*tiny_args(run, None, *QUICK, f"data.cache_dir={cache}"), *TOKENIZER[phase])
    r.wait_for(after)
    r.proc.send_signal(signal.SIGINT)
    code, out = r.finish()
    assert code == 130, out[-3000:]
    line = stop_line(out)
    assert "SIGINT: stopped before training began; nothing was saved" in line
    if phase == "tokenizer training":  # the signal cut it short
        assert "trained a byte-level BPE tokenizer" not in out
    assert not run.exists()  # it was new: nothing of it is left
    assert not [p for p in cache.glob(".*") if ".tmp-" in p.name]  # no half-written cache


def test_sigterm_during_the_final_validation_exits_143_without_a_summary(tmp_path, cache):
    run = tmp_path / "run"
    # one sequence per validation batch: the final whole-split validation takes a few seconds
    r = Run(*tiny_args(run, None, *QUICK, f"data.cache_dir={cache}", "data.val_batch_size=1"))
    r.wait_for(r"`Trainer.fit` stopped")
    r.proc.send_signal(signal.SIGTERM)
    code, out = r.finish()
    assert code == 143, out[-3000:]
    line = stop_line(out)
    assert "SIGTERM: stopped after the last step (8), before the end-of-run work" in line
    assert "final val loss" not in out
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8


def test_second_sigint_stops_at_once_with_130(tmp_path, cache):
    run = tmp_path / "run"
    r = Run(
        *tiny_args(
            run,
            None,
            *QUICK,
            f"data.cache_dir={cache}",
            "trainer.max_steps=100000",
            "callbacks.last_checkpoint.every_n_train_steps=1",
        )
    )
    r.wait_for_file(run / "checkpoints" / "last.ckpt")
    r.proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    r.proc.send_signal(signal.SIGINT)
    code, out = r.finish()
    assert code == 130, out[-3000:]
    line = stop_line(out)
    assert "SIGINT again: stopped at once" in line or "SIGINT: stopped after step" in line
    assert "Continue with: nextok-train" in line
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] >= 1
    assert not list((run / "checkpoints").glob("*.tmp*"))  # a cut save leaves only its temp ...


@pytest.fixture
def notes(tmp_path):
    """A folder of text files for data=local_text (30 stdlib modules)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for f in sorted((Path(sysconfig.get_paths()["stdlib"]) / "email").glob("*.py"))[:30]:
        (folder / f"{f.stem}.txt").write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_sigterm_in_training_then_the_printed_and_a_bare_resume_continue_the_run(tmp_path, notes):
    """Slow (three short runs, ~1-2 min): one SIGTERM stops at the step boundary with no
    validation, samples or tasks; the printed command, run verbatim in a shell, finishes the run;
    a bare ``resume=auto`` continues it on its own corpus; a changed data config is refused."""
    run = tmp_path / "my run"  # a space: the printed command must be quoted
    r = Run(
        *tiny_args(
            run,
            None,
            "data=local_text",
            f"data.data_files={notes}",
            "data.val_fraction=0.1",
            "tasks=[]",
            "trainer.max_steps=12",
            "trainer.val_check_interval=2",
            "callbacks.last_checkpoint.every_n_train_steps=3",
        )
    )
    r.wait_for(r"step 2: val/loss")  # a periodic validation wrote a best-* checkpoint
    r.proc.send_signal(signal.SIGTERM)
    code, out = r.finish()
    assert code == 143, out[-3000:]
    line = stop_line(out)
    step = int(re.search(r"stopped after step (\d+)", line)[1])
    assert step < 12 and f"saved {run / 'checkpoints' / 'last.ckpt'}" in line
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == step
    # no validation at the stop step (unless a periodic one was due), no samples
    vals = [int(s) for s in re.findall(r"step (\d+): val/loss", out)]
    assert all(s % 2 == 0 for s in vals) and "=== samples" not in out
    assert len(list((run / "checkpoints").glob("best-*"))) <= 2
    first_config = (run / "config.yaml").read_text()

    command = line.split("Continue with: ", 1)[1]
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final val loss" in done.stdout and "=== samples at step 12" in done.stdout
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 12
    assert len(list((run / "checkpoints").glob("best-*"))) == 2  # top-2: no orphan

    # typed by hand: the saved run is the base (its corpus, its model), the length may change
    bare = subprocess.run(
        [
            *console_cmd("nextok-train", "nextok.train"),
            f"hydra.run.dir={run}",
            "resume=auto",
            "trainer.max_steps=13",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert "kept its" in bare.stdout and "data.data_files" in bare.stdout
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 13
    assert (run / "config.yaml").read_text() == first_config  # the run's config stays
    resumed = OmegaConf.load(run / "config.resume-2.yaml")
    assert resumed.data.data_files == str(notes) and resumed.trainer.max_steps == 13

    refused = subprocess.run(
        [
            *console_cmd("nextok-train", "nextok.train"),
            f"hydra.run.dir={run}",
            "resume=auto",
            "data.vocab_size=600",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "nextok-train: error: data.vocab_size=600 would change the run in "
        f"{run}: it was trained with data.vocab_size=512 ({run / 'config.yaml'}); a resume "
        "keeps the data and model config: drop that override, or start a new run "
        "(init_from=<its checkpoint> to start from these weights)"
    ]
