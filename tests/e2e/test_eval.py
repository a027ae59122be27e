"""``nextok-eval`` (subprocess) on a checkpoint written by the real training module."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import lightning as L
import pytest
import torch

from nextok.data import LMDataModule
from nextok.data.sources import stdlib_dataset
from nextok.data.tokenization.tokenizer import save_tokenizer, train_bpe
from nextok.lit import LMModule
from nextok.lit.checkpoint_io import AtomicCheckpointIO
from nextok.model import ModelConfig
from nextok.optim import AdamWConfig, ScheduleConfig


def eval_cmd() -> list[str]:
    exe = shutil.which("nextok-eval")
    return [exe] if exe else [sys.executable, "-m", "nextok.cli.evaluate"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few training steps in-process; returns the checkpoint and its own val loss."""
    root = tmp_path_factory.mktemp("eval_e2e")
    ds = stdlib_dataset()
    tok = train_bpe(iter(ds.select(range(0, len(ds), 9))["text"]), 384, max_bytes=200_000)
    save_tokenizer(tok, root / "tok.json")
    dm = LMDataModule(
        tokenizer_path=str(root / "tok.json"),
        vocab_size=384,
        block_size=32,
        batch_size=4,
        max_val_batches=3,
        cache_dir=str(root / "cache"),
        run_dir=str(root),
    )
    dm.prepare_data()
    cfg = ModelConfig(vocab_size=384, block_size=32, n_layer=1, n_head=2, d_model=32)
    module = LMModule(cfg, optim=AdamWConfig(lr=1e-2), schedule=ScheduleConfig(name="constant"))
    module.tokenizer = dm.tokenizer
    ckpt0 = root / "init.ckpt"
    trainer0 = L.Trainer(
        accelerator="cpu",
        max_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )
    torch.manual_seed(0)
    init = LMModule(cfg, optim=AdamWConfig(lr=1e-2), schedule=ScheduleConfig(name="constant"))
    init.tokenizer = dm.tokenizer
    trainer0.fit(init, datamodule=dm)
    trainer0.save_checkpoint(ckpt0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=5,
        check_val_every_n_epoch=None,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
    )
    torch.manual_seed(0)
    trainer.fit(module, datamodule=dm)
    ckpt = root / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return {
        "ckpt": ckpt,
        "ckpt0": ckpt0,
        "val_loss": float(trainer.callback_metrics["val/loss"]),
        "val_bpb": float(trainer.callback_metrics["val/bpb"]),
        "root": root,
    }


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*eval_cmd(), *args], capture_output=True, text=True, timeout=240, env=dict(os.environ)
    )


def test_eval_matches_validation_loss(trained, tmp_path):
    out = tmp_path / "eval.json"
    proc = run_eval(
        f"ckpt={trained['ckpt']}",
        "data.batch_size=4",
        "max_batches=3",
        f"data.cache_dir={trained['root'] / 'cache'}",
        f"out={out}",
        "tasks=[]",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["split"] == "val" and result["tokens"] == 3 * 4 * 32
    assert result["loss"] == pytest.approx(trained["val_loss"], rel=1e-5)  # same blocks, same model
    assert result["bpb"] == pytest.approx(trained["val_bpb"], rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert "perplexity" in proc.stdout and "bpb" in proc.stdout
    # the train split works too (a different number, still finite)
    proc = run_eval(
        f"ckpt={trained['ckpt']}",
        "split=train",
        "max_batches=2",
        "data.batch_size=4",
        f"data.cache_dir={trained['root'] / 'cache'}",
        "tasks=[]",
        "json=true",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = json.loads(proc.stdout.strip().splitlines()[-1])
    assert train["split"] == "train" and train["tokens"] == 2 * 4 * 32
    assert math.isfinite(train["loss"])


def test_eval_several_checkpoints_one_table_and_json(trained, tmp_path):
    """Two checkpoints -> one table row each (loss, ppl, bpb, task scores), and JSON output."""
    ckpts = f"ckpt=[{trained['ckpt']},{trained['ckpt0']}]"
    common = [
        "data.batch_size=4",
        "data.max_val_batches=2",
        f"data.cache_dir={trained['root'] / 'cache'}",
        "tasks.stdlib_next_line.num_examples=12",
        "tasks.stdlib_next_line.context_lines=2",
        "tasks.stdlib_next_line.max_chars=30",
    ]
    proc = run_eval(ckpts, *common, f"out={tmp_path / 'all.json'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    header = next(ln for ln in lines if ln.startswith("ckpt"))
    for col in ("loss", "perplexity", "bpb", "stdlib_next_line/acc", "stdlib_next_line/acc_norm"):
        assert col in header.split()
    assert "stdlib_next_line/acc_pmi" in header.split()  # the shipped task sets pmi: true
    rows = [ln for ln in lines if ln.startswith(str(trained["root"]))]
    assert len(rows) == 2
    results = json.loads((tmp_path / "all.json").read_text())
    assert [r["ckpt"] for r in results] == [str(trained["ckpt"]), str(trained["ckpt0"])]
    assert results[0]["loss"] < results[1]["loss"]  # trained vs untrained weights
    task = results[0]["tasks"]["stdlib_next_line"]
    assert task["n"] == 12 and 0 <= task["acc"] <= 1 and task["chance"] == 0.25
    assert 0 <= task["acc_pmi"] <= 1
    proc = run_eval(ckpts, *common, "json=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(ln)["ckpt"] for ln in proc.stdout.strip().splitlines()] == [
        str(trained["ckpt"]),
        str(trained["ckpt0"]),
    ]


def test_eval_errors_are_one_line(tmp_path):
    proc = run_eval(f"ckpt={tmp_path / 'missing.ckpt'}")
    assert proc.returncode == 2
    assert "checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_quantized_int8_close_to_full_precision(trained, tmp_path):
    """quantize=int8 evaluates the torchao-quantized model: same blocks, loss within 1%."""
    pytest.importorskip("torchao")
    out = tmp_path / "q.json"
    common = ["data.batch_size=4", "max_batches=3", f"data.cache_dir={trained['root'] / 'cache'}"]
    proc = run_eval(f"ckpt={trained['ckpt']}", *common, "tasks=[]", "quantize=int8", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quantize"] == "int8" and result["tokens"] == 3 * 4 * 32
    assert result["loss"] != trained["val_loss"]
    assert result["loss"] == pytest.approx(trained["val_loss"], rel=0.01)
    assert f"{trained['ckpt']} (int8)" in proc.stdout
