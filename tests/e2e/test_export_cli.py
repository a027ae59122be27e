"""``nextok-export`` end to end: a checkpoint written by ``nextok-train`` -> a Hugging Face folder
that ``transformers`` loads and that computes the same logits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.cli import console_cmd
from nextok.checkpoint import load_checkpoint

transformers = pytest.importorskip("transformers")


def test_export_a_trained_checkpoint_to_hugging_face(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"def g{i}(y):\n    return y * {i}\n" for i in range(300)))
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    train = subprocess.run(
        [
            *console_cmd("nextok-train", "nextok.cli.train"),
            "data=local_text",
            f"data.data_files={corpus}",
            "data.document_unit=line",
            "data.vocab_size=300",
            "data.val_fraction=0.05",
            "data.batch_size=4",
            "model.block_size=32",
            "model.n_layer=1",
            "model.d_model=32",
            "model.n_head=2",
            "model.n_kv_head=1",
            "model.tie_embeddings=false",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "callbacks.sampling=null",
            "tasks=[]",
            f"hydra.run.dir={run_dir}",
            "print_config=false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "hf"
    exp = subprocess.run(
        [*console_cmd("nextok-export", "nextok.cli.export"), f"ckpt={ckpt}", f"out={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert exp.returncode == 0, exp.stderr
    assert f"to {out}" in exp.stdout

    loaded = load_checkpoint(ckpt)
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    hf_tok = transformers.PreTrainedTokenizerFast.from_pretrained(out)
    text = "def g7(y):\n    return"
    ids = loaded.tokenizer.encode(text).ids
    assert hf_tok(text)["input_ids"] == ids
    idx = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(idx)[0], ref(idx).logits, atol=1e-4, rtol=1e-4)

    bad = subprocess.run(
        [
            *console_cmd("nextok-export", "nextok.cli.export"),
            f"ckpt={tmp_path / 'nope.ckpt'}",
            f"out={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "checkpoint not found" in bad.stderr and "Traceback" not in bad.stderr
