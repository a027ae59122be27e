"""The real pipeline on one run: ``nextok-train`` (tiny, steps-limited, on a local text file, an
untied LM head), then ``nextok-generate`` and ``nextok-export`` on its checkpoint; the exported
folder loads in ``transformers`` and computes the same logits."""

from __future__ import annotations

import csv

import pytest
import torch

from helpers.cli import cli, ok
from nextok.checkpoint import load_checkpoint

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_generate_export")
    corpus = root / "corpus.txt"
    corpus.write_text(
        "".join(f"def f{i}(x):\n    return x + {i}    # add {i}\n" for i in range(300))
    )
    run_dir = root / "run"
    proc = ok(
        cli(
            "nextok-train",
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
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "callbacks.sampling.max_new_tokens=8",
            'callbacks.sampling.prompts=["def ",x]',
            f"hydra.run.dir={run_dir}",
            "print_config=false",
            "tasks=[]",
            cwd=root,
        )
    )
    return {
        "root": root,
        "dir": run_dir,
        "ckpt": run_dir / "checkpoints" / "last.ckpt",
        "proc": proc,
    }


def test_the_sampling_callback_ran_inside_the_training_app(trained):
    with open(trained["dir"] / "csv" / "version_0" / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["prompt"]) for r in rows] == [("3", "def "), ("3", "x")]
    assert "samples at step 3" in trained["proc"].stdout


def test_generate_on_the_checkpoint(trained, tmp_path):
    gen = ok(
        cli(
            "nextok-generate",
            f"ckpt={trained['ckpt']}",
            "prompt=def f1",
            "max_new_tokens=16",
            "seed=0",
            "top_k=20",
            cwd=tmp_path,
        )
    )
    assert gen.stdout.startswith("def f1") and len(gen.stdout) > len("def f1\n")
    assert "tokens/s" in gen.stderr
    n = int(gen.stderr.split("generated ")[1].split(" tokens")[0])
    assert 0 < n <= 16


def test_export_to_hugging_face_gives_the_same_logits(trained, tmp_path):
    ckpt, out = trained["ckpt"], tmp_path / "hf"
    exp = ok(cli("nextok-export", f"ckpt={ckpt}", f"out={out}", cwd=tmp_path))
    assert f"to {out}" in exp.stdout
    loaded = load_checkpoint(ckpt)
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    hf_tok = transformers.PreTrainedTokenizerFast.from_pretrained(out)
    text = "def f7(x):\n    return"
    ids = loaded.tokenizer.encode(text).ids
    assert hf_tok(text)["input_ids"] == ids
    idx = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(idx)[0], ref(idx).logits, atol=1e-4, rtol=1e-4)
    bad = cli("nextok-export", f"ckpt={tmp_path / 'nope.ckpt'}", f"out={out}", cwd=tmp_path)
    assert bad.returncode == 2
    assert "checkpoint not found" in bad.stderr and "Traceback" not in bad.stderr
