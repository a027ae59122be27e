"""Same global batch and seed on 1 process, 2 DDP processes and 2 FSDP2 processes (CPU, gloo,
fp32): the models after k steps agree (loss on real text within 1e-5). Also: ``nextok-consolidate``
turns FSDP2 sharded checkpoints into files ``load_checkpoint`` reads, and a sharded checkpoint
resumes exactly (the resumed run matches the uninterrupted one).

Every run is a real ``nextok-train`` subprocess tree (Lightning launches rank 1 itself).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.distributed import QUIET, TINY_MODEL, data_overrides, eval_loss, run_train
from nextok.checkpoint import load_checkpoint
from nextok.checkpoint.consolidate import consolidate

K, K2 = 3, 5  # compare after K steps; the FSDP run is then resumed to K2
GLOBAL_BATCH = 4  # sequences per optimizer step, on every world size
TOL = 1e-5


def _common(corpus: Path, run_dir: Path, tokenizer: Path | None, optim: str = "adamw") -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
        "model.qk_norm=true",  # per-head norm weights: replicated under tensor parallelism
        *data_overrides(corpus, tokenizer),
        *QUIET,
        f"global_batch_size={GLOBAL_BATCH}",
        "seed=7",
        # no warm-up and a large lr: a few steps move the loss far beyond the tolerance
        "schedule=constant",
        "schedule.warmup_steps=0",
        f"optim={optim}",
        "optim.lr=0.01",
    ]


@pytest.fixture(scope="module")
def single(tmp_path_factory, corpus):
    """1 process, K2 steps, a checkpoint after every step (s<step>.ckpt)."""
    run = tmp_path_factory.mktemp("single")
    _, seconds = run_train(
        [
            *_common(corpus, run, None),
            "trainer=cpu",
            f"data.batch_size={GLOBAL_BATCH}",
            f"trainer.max_steps={K2}",
            "callbacks.last_checkpoint.every_n_train_steps=1",
            # every step kept: the best-checkpoint callback monitoring the step counter
            "+callbacks.steps._target_=nextok.lit.callbacks.ModelCheckpoint",
            f"+callbacks.steps.dirpath={run}/steps",
            "+callbacks.steps.monitor=step",
            "+callbacks.steps.mode=max",
            "+callbacks.steps.save_top_k=-1",
            "+callbacks.steps.every_n_train_steps=1",
            "+callbacks.steps.filename='s{step}'",
            "+callbacks.steps.auto_insert_metric_name=false",
        ]
    )
    print(f"1 process, {K2} steps: {seconds:.1f} s")
    return run


def _step_ckpt(run: Path, step: int) -> Path:
    path = run / "steps" / f"s{step}.ckpt"
    assert path.exists(), f"missing {path}: {sorted(p.name for p in (run / 'steps').iterdir())}"
    return path


def _two_process(corpus, run: Path, tokenizer: Path, trainer: str, steps: int, extra=()):
    return run_train(
        [
            *_common(corpus, run, tokenizer),
            f"trainer={trainer}",
            "trainer.devices=2",
            f"data.batch_size={GLOBAL_BATCH // 2}",
            f"trainer.max_steps={steps}",
            f"callbacks.last_checkpoint.every_n_train_steps={K}",
            *extra,
        ]
    )


def _loss(path: Path, corpus: Path) -> float:
    return eval_loss(load_checkpoint(path), corpus.read_text()[-20_000:])


def test_ddp_two_processes_match_single(tmp_path, corpus, single):
    _, seconds = _two_process(corpus, tmp_path, single / "tokenizer.json", "ddp_sim", K)
    print(f"DDP 2 processes, {K} steps: {seconds:.1f} s")
    ref = _loss(_step_ckpt(single, K), corpus)
    got = _loss(tmp_path / "checkpoints" / "last.ckpt", corpus)
    print(f"DDP vs 1 process after {K} steps: loss {got:.7f} vs {ref:.7f}")
    assert abs(got - ref) < TOL, f"DDP loss {got} vs 1-process {ref}"
    # the check has teeth: training moves the loss by far more than the tolerance
    assert abs(_loss(_step_ckpt(single, 1), corpus) - ref) > 1000 * TOL


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory, corpus, single) -> Path:
    """2 FSDP2 processes, K steps; its sharded last.ckpt is a folder."""
    run = tmp_path_factory.mktemp("fsdp")
    _, seconds = _two_process(corpus, run, single / "tokenizer.json", "fsdp_cpu", K)
    print(f"FSDP 2 processes, {K} steps: {seconds:.1f} s")
    return run


def test_fsdp_two_processes_match_single(tmp_path, corpus, single, fsdp_run):
    sharded = fsdp_run / "checkpoints" / "last.ckpt"
    assert sharded.is_dir() and len(list(sharded.glob("*.distcp"))) == 2, "expected 2 shards"
    with pytest.raises(IsADirectoryError):
        load_checkpoint(sharded)

    # consolidate -> the single-file checkpoint contract
    ck = load_checkpoint(consolidate(sharded, tmp_path / "k3.pt"))
    ref_ck = load_checkpoint(_step_ckpt(single, K))
    assert ck.meta["tokens_seen"] == ref_ck.meta["tokens_seen"] == K * GLOBAL_BATCH * 32
    assert ck.tokenizer.to_str() == ref_ck.tokenizer.to_str()
    text = corpus.read_text()[-20_000:]
    got, ref = eval_loss(ck, text), eval_loss(ref_ck, text)
    print(f"FSDP vs 1 process after {K} steps: loss {got:.7f} vs {ref:.7f}")
    assert abs(got - ref) < TOL, f"FSDP loss {got} vs 1-process {ref} after {K} steps"


def test_fsdp_sharded_checkpoint_resumes_exactly(tmp_path, corpus, single, fsdp_run):
    """Resume the sharded checkpoint (model + optimizer + data position) from K to K2 steps."""
    run = tmp_path / "run"
    shutil.copytree(fsdp_run, run)
    sharded = run / "checkpoints" / "last.ckpt"
    out, seconds = _two_process(
        corpus, run, single / "tokenizer.json", "fsdp_cpu", K2, extra=["resume=auto"]
    )
    print(f"FSDP 2 processes, resumed {K} -> {K2} steps: {seconds:.1f} s")
    assert f"resuming from {sharded}" in out
    ck5 = load_checkpoint(consolidate(sharded, tmp_path / "k5.pt"))
    ref5 = load_checkpoint(_step_ckpt(single, K2))
    assert ck5.meta["tokens_seen"] == K2 * GLOBAL_BATCH * 32
    text = corpus.read_text()[-20_000:]
    got, ref = eval_loss(ck5, text), eval_loss(ref5, text)
    print(f"resumed FSDP vs uninterrupted 1 process after {K2} steps: loss {got:.7f} vs {ref:.7f}")
    assert abs(got - ref) < TOL, f"resumed FSDP loss {got} vs uninterrupted {ref}"


def test_consolidate_cli_errors(tmp_path):
    cmd = [sys.executable, "-m", "nextok.cli.consolidate"]
    missing = subprocess.run([*cmd, str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    notdcp = subprocess.run([*cmd, str(plain)], capture_output=True, text=True)
    assert notdcp.returncode == 2 and "not a sharded checkpoint folder" in notdcp.stderr


@pytest.mark.slow
def test_tensor_parallel_two_processes_match_single(tmp_path, corpus, single):
    """FSDP2Strategy(tensor_parallel_size=2): one data-parallel rank, each block's matmuls split
    over 2 processes (fused qkv / SwiGLU weights strided, QK-norm weights replicated with their
    gradients summed over the ranks' heads); same batch as the 1-process run."""
    _, seconds = run_train(
        [
            *_common(corpus, tmp_path, single / "tokenizer.json"),
            "trainer=fsdp_cpu",
            "trainer.strategy.tensor_parallel_size=2",
            "global_batch_size=null",
            f"data.batch_size={GLOBAL_BATCH}",
            f"trainer.max_steps={K}",
            f"callbacks.last_checkpoint.every_n_train_steps={K}",
        ]
    )
    print(f"tensor parallel 2 processes, {K} steps: {seconds:.1f} s")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()  # tensor-parallel checkpoints are gathered into one file
    got, ref = _loss(last, corpus), _loss(_step_ckpt(single, K), corpus)
    print(f"TP vs 1 process after {K} steps: loss {got:.7f} vs {ref:.7f}")
    assert abs(got - ref) < TOL, f"tensor-parallel loss {got} vs 1-process {ref}"


@pytest.mark.slow
def test_tensor_parallel_with_muon_matches_single(tmp_path, corpus):
    """optim=muon with tensor parallel size 2 (matrices split by rows or columns, fused weights
    strided): every rank all-gathers each update for Newton-Schulz and keeps its part."""
    muon = ["optim.lr=0.02", f"trainer.max_steps={K}"]
    single = tmp_path / "single"
    run_train(
        [
            *_common(corpus, single, None, "muon"),
            *muon,
            "trainer=cpu",
            f"data.batch_size={GLOBAL_BATCH}",
        ]
    )
    tp = tmp_path / "tp"
    run_train(
        [
            *_common(corpus, tp, single / "tokenizer.json", "muon"),
            *muon,
            "trainer=fsdp_cpu",
            "trainer.strategy.tensor_parallel_size=2",
            "global_batch_size=null",
            f"data.batch_size={GLOBAL_BATCH}",
            f"callbacks.last_checkpoint.every_n_train_steps={K}",
        ]
    )
    got = _loss(tp / "checkpoints" / "last.ckpt", corpus)
    ref = _loss(single / "checkpoints" / "last.ckpt", corpus)
    print(f"TP + Muon vs 1 process after {K} steps: loss {got:.7f} vs {ref:.7f}")
    assert abs(got - ref) < 1e-4
