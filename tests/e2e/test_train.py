"""End-to-end tests of the real ``nextok-train`` entry point (subprocesses) on tiny configs.

One tokenizer and one token cache are shared by every run of this module, so each run costs
mostly interpreter start-up (importing torch + Lightning).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers.cli import console_cmd, metrics, ok
from nextok.checkpoint import load_checkpoint

EXPERIMENTS = ["default", "tinystories", "gpt2_small_fineweb", "llama_1b"]
DEBUGS = ["fast_dev_run", "overfit", "profiler"]


def run_train(args: list[str], timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [*console_cmd("nextok-train"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict[str, Path]:
    """A small BPE tokenizer (vocab 512) and a token cache dir shared by all runs."""
    from nextok.data.sources import stdlib_dataset
    from nextok.data.tokenization.tokenizer import save_tokenizer, train_bpe

    root = tmp_path_factory.mktemp("train_e2e")
    ds = stdlib_dataset()
    texts = ds.select(range(0, len(ds), 7))["text"]
    save_tokenizer(train_bpe(iter(texts), 512, max_bytes=300_000), root / "tok.json")
    return {"root": root, "tok": root / "tok.json", "cache": root / "cache"}


def tiny(shared: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        "model.n_layer=1",
        "model.d_model=32",
        "model.n_head=2",
        "model.n_kv_head=2",
        "model.block_size=32",
        "data.batch_size=4",
        "data.max_val_batches=2",
        "data.vocab_size=512",
        "data.val_batch_size=64",  # the final whole-split validation in few batches
        f"data.tokenizer_path={shared['tok']}",
        f"data.cache_dir={shared['cache']}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=4",
        "schedule.warmup_steps=2",
        "schedule.total_steps=20",
        "print_config=false",
        "tasks=[]",
        *extra,
    ]


# ---------------------------------------------------------------------------- smoke
def test_smoke_all_loggers_checkpoints_samples(shared, tmp_path):
    run = tmp_path / "run"
    proc = ok(
        run_train(
            tiny(
                # length as a token budget, batch as a global batch: 2048 / (8 x 32) = 8 optimizer steps
                # of 2 accumulated micro-batches of 4 sequences
                shared,
                run,
                "max_tokens=2048",
                "trainer.max_steps=-1",
                "global_batch_size=8",
                "callbacks.last_checkpoint.every_n_train_steps=3",
                "logger=many",
                "callbacks.sampling.max_new_tokens=8",
                "callbacks.throughput.window_size=4",
                "tasks=[stdlib_next_line]",
                "tasks.stdlib_next_line.num_examples=16",
            )
        )
    )
    out = proc.stdout + proc.stderr
    # run directory: resolved config, tokenizer, checkpoints, logs
    assert "${" not in (run / "config.yaml").read_text()  # resolved
    assert (run / "tokenizer.json").exists()
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts), ckpts
    loaded = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert loaded.meta["tokens_seen"] == 2048  # the final step was saved
    assert "grad accumulation 2" in out
    assert loaded.config.n_layer == 1 and loaded.config.vocab_size == 512
    # logs: per-step loss/lr/grad norm/tokens, throughput, validation loss and perplexity
    losses = metrics(run)
    assert sorted(losses) == list(range(8))
    for key in (
        "train/lr",
        "train/grad_norm",
        "train/tokens_seen",
        "val/loss",
        "val/ppl",
        "train/tokens_per_sec",
        "train/samples_per_sec",
        "baseline/unigram_loss",
        "val/bpb",
        "eval/stdlib_next_line/acc",
        "eval/stdlib_next_line/acc_norm",
        "eval/stdlib_next_line/acc_pmi",  # the shipped task asks for it (pmi: true)
    ):
        assert metrics(run, key), key
    assert list(run.glob("tensorboard/version_0/events.out.tfevents.*"))
    wandb_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1 and list(wandb_runs[0].glob("*.wandb"))
    assert (run / "wandb_run_id.txt").read_text().strip() in wandb_runs[0].name
    mlflow_metrics = list(run.glob("mlruns/*/*/metrics/train/loss"))
    assert mlflow_metrics and len(mlflow_metrics[0].read_text().splitlines()) == 8
    # console: unigram baseline, final comparison, KV-cached samples from the sampling callback
    assert "unigram baseline on val" in out and "vs unigram baseline" in out
    assert "=== samples at step 8 ===" in out
    assert re.search(
        r"\[nextok\] eval stdlib_next_line: acc [0-9.]+  acc_norm [0-9.]+  acc_pmi [0-9.]+  "
        r"\(16 examples; chance 0\.2500",
        out,
    )


# ---------------------------------------------------------------------------- exact resume
@pytest.fixture(scope="module")
def uninterrupted(shared) -> dict[int, str]:
    """A 12-step reference run (2 dataloader workers)."""
    run = shared["root"] / "ref"
    ok(
        run_train(
            tiny(
                shared, run, "trainer.max_steps=12", "data.num_workers=2", "callbacks.sampling=null"
            )
        )
    )
    return {k: metrics(run, k) for k in ("train/loss", "train/grad_norm", "train/lr")}


def test_exact_resume_matches_uninterrupted(shared, uninterrupted, tmp_path):
    """Stop at step 5, resume to 12: the same per-step losses, bitwise (CPU, fp32, 2 workers)."""
    run = tmp_path / "run"
    base = tiny(
        shared,
        run,
        "data.num_workers=2",
        "callbacks.sampling=null",
        "callbacks.last_checkpoint.every_n_train_steps=100",
    )
    ok(run_train([*base, "trainer.max_steps=5"]))
    assert sorted(metrics(run)) == list(range(5))
    proc = ok(run_train([*base, "trainer.max_steps=12", "resume=auto"]))
    assert "resuming from" in proc.stdout
    assert "exists and is not empty" not in proc.stdout + proc.stderr  # expected when resuming
    assert len(list((run / "csv").glob("version_*"))) == 2
    for key, ref in uninterrupted.items():
        assert metrics(run, key) == ref, key  # exact string equality of the logged floats


@pytest.mark.slow
def test_sigkill_then_resume(shared, uninterrupted, tmp_path):
    """Kill -9 mid-training; resume=auto loses only the steps since the last checkpoint.

    Slow (two runs, one killed). Fast coverage of its parts: the resume itself is
    test_exact_resume_matches_uninterrupted; the dead process's lock and temp files are
    tests/lit/test_run_dir.py (taken over, cleaned)."""
    run = tmp_path / "run"
    base = tiny(
        shared,
        run,
        "data.num_workers=2",
        "callbacks.sampling=null",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        "callbacks.best_checkpoint=null",
        "callbacks.unigram_baseline=null",
    )
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [*console_cmd("nextok-train"), *base, "trainer.max_steps=100000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    try:
        while not last.exists():
            assert proc.poll() is None, f"run ended early: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved_step = torch.load(last, weights_only=False, map_location="cpu")["global_step"]
    assert 2 <= saved_step < 12
    ok(run_train([*base, "trainer.max_steps=12", "resume=auto"]))
    resumed = {}
    for f in sorted((run / "csv").glob("version_*/metrics.csv")):
        resumed = {
            int(r["step"]): r["train/loss"] for r in csv.DictReader(f.open()) if r.get("train/loss")
        }  # the last version is the resumed run
    assert sorted(resumed) == list(range(saved_step, 12))
    assert resumed == {s: uninterrupted["train/loss"][s] for s in resumed}


# ---------------------------------------------------------------------------- config / debug
def test_fast_dev_run(shared, tmp_path):
    run = tmp_path / "run"
    proc = ok(run_train(tiny(shared, run, "debug=fast_dev_run")))
    assert "=== samples at step 1 ===" in proc.stdout
    assert not list(run.glob("checkpoints/*.ckpt"))  # fast_dev_run writes no checkpoints


@pytest.mark.parametrize(
    "choice", [f"experiment={e}" for e in EXPERIMENTS] + [f"debug={d}" for d in DEBUGS]
)
def test_configs_compose(choice):
    proc = ok(run_train([choice, "--cfg", "job"], timeout=120))
    assert "_target_: nextok.lit.LMModule" in proc.stdout
    if choice.startswith("experiment="):
        assert f"name: {choice.split('=')[1]}" in proc.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_layers=2", "Could not override 'model.n_layers'"),
        ("trainer=tpu_pod", "Could not find 'trainer/tpu_pod'"),
        ("optim.lrr=1", "Could not override 'optim.lrr'"),
    ],
)
def test_bad_override_fails_fast(override, message):
    t0 = time.monotonic()
    proc = run_train([override], timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert time.monotonic() - t0 < 60  # before any data or model work


def test_bad_value_is_a_one_line_error(shared, tmp_path):
    proc = run_train(tiny(shared, tmp_path / "run", "model.vocab_size=100"))
    assert proc.returncode == 2
    assert "model.vocab_size=100 is smaller than the tokenizer's vocabulary (512)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_out_of_range_value_is_refused_before_any_work(tmp_path):
    """The default run (it trains its own tokenizer): refused before that, leaving no run dir.
    Every key's range and message is checked in-process: tests/lit/test_config_check.py."""
    run = tmp_path / "run"
    proc = run_train([f"hydra.run.dir={run}", "trainer.max_steps=0"], timeout=120)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    message = "trainer.max_steps=0: expected -1 (no step limit) or a positive"
    assert line.startswith(f"nextok-train: error: {message}")
    assert "tokenizer" not in proc.stdout
    assert not run.exists()


def test_a_run_on_other_data_skips_the_stdlib_task(shared, tmp_path):
    """The default task list scores the stdlib corpus's held-out files: a run on one's own
    corpus skips it (one line) instead of paying 40-120 s for it."""
    from nextok.data.sources import stdlib_files

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, f in enumerate(stdlib_files()[:40]):
        (corpus / f"{i}.txt").write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    args = [a for a in tiny(shared, tmp_path / "run", "trainer.max_steps=2") if a != "tasks=[]"]
    proc = ok(
        run_train(
            [*args, "data=local_text", f"data.data_files={corpus}", "callbacks.sampling=null"]
        )
    )
    assert "[nextok] task stdlib_next_line skipped: it belongs to the stdlib corpus" in proc.stdout
    assert "eval stdlib_next_line" not in proc.stdout


def test_a_named_preset_changed_by_the_experiment_is_reported(shared, tmp_path):
    """``model=gpt2_small`` under the default experiment trains with its block_size of 128, an
    untied head and QK-norm: the start-up summary says so and how to keep the preset's values."""
    args = [a for a in tiny(shared, tmp_path / "run") if a != "model.block_size=32"]
    proc = ok(
        run_train([*args, "model=gpt2_small", "trainer.max_steps=1", "callbacks.sampling=null"])
    )
    assert (
        "[nextok] model=gpt2_small: experiment=default sets model.block_size=128 (preset: 1024), "
        "model.tie_embeddings=false (preset: true), model.qk_norm=true (preset: false); add "
        "model.block_size=1024 model.tie_embeddings=true model.qk_norm=false to keep the "
        "preset's values"
    ) in proc.stdout


def test_too_little_data_is_one_line_and_leaves_no_run_dir(shared, tmp_path):
    """The token count is known only once the data is tokenized (in Lightning's setup): still a
    start-up failure, so the new run dir goes."""
    (tmp_path / "small.txt").write_text("a line\nanother line\n")
    run = tmp_path / "run"
    proc = run_train(
        tiny(shared, run, "data=local_text", f"data.data_files={tmp_path / 'small.txt'}")
        + ["data.document_unit=line"],
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    [line] = proc.stderr.strip().splitlines()
    assert "fewer than one block of block_size+1=33" in line
    assert not run.exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("tokenizer.json", b"{not json", "tokenizer.json is not a valid tokenizer.json (key must"),
        (
            "tokenizer.json",
            b'{"a": "\xff"}',
            "tokenizer.json is not a valid tokenizer.json (not UTF-8",
        ),
        ("train.log", None, "the run log {run}/train.log is a folder; move it away or choose"),
    ],
)
def test_a_bad_file_in_the_run_dir_is_one_line_naming_it(tmp_path, name, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is None:
        (run / name).mkdir()
    else:
        (run / name).write_bytes(content)
    proc = run_train([f"hydra.run.dir={run}", "tasks=[]"], timeout=120)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("nextok-train: error: ") and message.format(run=run) in line
    assert str(run / name) in line


def test_train_log_stays_plain_in_a_terminal(shared, tmp_path):
    """Under a pseudo-terminal the rich bar redraws itself every step with escape codes; the run
    log gets plain lines: no escape codes, no bar redraws, one line per log step."""
    import pty

    run = tmp_path / "run"
    args = [a for a in tiny(shared, run, "trainer.max_steps=12") if "enable_progress_bar" not in a]
    args = [*args, "trainer.log_every_n_steps=4", "callbacks.sampling=null"]
    leader, follower = pty.openpty()
    env = {**os.environ, "WANDB_MODE": "offline", "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(
        [*console_cmd("nextok-train"), *args], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    shown = b""
    while True:  # drain the terminal, or the child blocks on a full pty
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=240) == 0, shown.decode(errors="replace")[-3000:]
    os.close(leader)
    assert b"\x1b[" in shown and "\u2501".encode() in shown  # the terminal did get the rich bar
    log = (run / "train.log").read_text()
    assert "\x1b" not in log and "\u2501" not in log and "\r" not in log
    steps = [ln.split()[1] for ln in log.splitlines() if ln.startswith("step ")]
    assert steps == ["4/12", "8/12", "12/12"], log
    assert "[nextok] final val loss" in log and len(log.splitlines()) < 60, log


# ---------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_max_time_is_honoured(shared, tmp_path):
    run = tmp_path / "run"
    proc = ok(
        run_train(
            tiny(
                shared,
                run,
                "trainer.max_steps=1000000",
                "trainer.max_time=00:00:00:05",
                "schedule=constant",
                "callbacks.sampling=null",
            )
        )
    )
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < step < 1000000
    # the summary says why the run ended early
    assert f"[nextok] stopped by max_time at step {step} of 1000000" in proc.stdout


@pytest.mark.slow
def test_ddp_sim_two_cpu_processes(shared, tmp_path):
    run = tmp_path / "run"
    proc = ok(
        run_train(
            tiny(
                shared,
                run,
                "trainer=ddp_sim",
                "trainer.max_steps=4",
                "callbacks.sampling.max_new_tokens=4",
            ),
            timeout=400,
        )
    )
    assert "world size 2" in proc.stdout
    assert sorted(metrics(run)) == list(range(4))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt").meta["tokens_seen"] == 4 * 2 * 4 * 32


@pytest.mark.slow
def test_default_run_beats_unigram_in_under_5_minutes(tmp_path):
    """`nextok-train` with no arguments (only the run dir set): the documented default run."""
    t0 = time.monotonic()
    proc = ok(run_train([f"hydra.run.dir={tmp_path / 'run'}"], timeout=400))
    wall = time.monotonic() - t0
    val = float(metrics(tmp_path / "run", "val/loss")[max(metrics(tmp_path / "run", "val/loss"))])
    base = float(next(iter(metrics(tmp_path / "run", "baseline/unigram_loss").values())))
    print(f"default run: {wall:.0f} s, val loss {val:.3f}, unigram {base:.3f}")
    assert wall < 300
    assert val < base - 0.5
    assert "=== samples at step" in proc.stdout
    # The downstream task at the end: clearly above chance (25%). Measured on this default run
    # (seed 1337, 2 threads; deterministic on CPU): acc 0.3500, acc_norm 0.3700, acc_pmi 0.6400
    # (300 examples). Chance gives 0.25 +- 0.025 (one standard error at n=300), and an untrained
    # model scores chance on every column (the distractors match the true line's length; 0.254
    # on 1,000 examples). acc > 0.30 is 2 standard errors above chance and 2 below the measured
    # figure (room for other platforms); acc_pmi > 0.50 is 10 above chance, 5 below the measure.
    found = re.search(
        r"eval stdlib_next_line: acc ([0-9.]+)\s+acc_norm ([0-9.]+)\s+acc_pmi ([0-9.]+)",
        proc.stdout,
    )
    acc, acc_norm, acc_pmi = (float(found.group(i)) for i in (1, 2, 3))
    print(f"stdlib_next_line acc {acc:.4f} acc_norm {acc_norm:.4f} acc_pmi {acc_pmi:.4f}")
    assert acc > 0.30
    assert acc_pmi > 0.50
    assert acc_norm > 0.30
