"""The real pipeline: ``nextok-train`` (tiny, steps-limited) then ``nextok-generate`` on its checkpoint."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

from helpers.cli import console_cmd


def test_generate_on_a_checkpoint_written_by_nextok_train(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"def f{i}(x):    return x + {i}    # add {i}\n" for i in range(300)))
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    train = subprocess.run(
        [
            *console_cmd("nextok-train", "nextok.cli.train"),
            "data=local_text",
            f"data.data_files={corpus}",
            "data.document_unit=line",
            "data.vocab_size=300",
            "data.batch_size=4",
            "model.block_size=32",
            "model.n_layer=2",
            "model.d_model=32",
            "model.n_head=2",
            "model.n_kv_head=1",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "callbacks.sampling.max_new_tokens=8",
            'callbacks.sampling.prompts=["def ",x]',
            f"hydra.run.dir={run_dir}",
            "print_config=false",
            "tasks=[]",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    # the sampling callback ran inside the real training app and wrote its CSV
    with open(run_dir / "csv" / "version_0" / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["prompt"]) for r in rows] == [("3", "def "), ("3", "x")]
    assert "samples at step 3" in train.stdout

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    gen = subprocess.run(
        [
            *console_cmd("nextok-generate", "nextok.cli.generate"),
            f"ckpt={ckpt}",
            "prompt=def f1",
            "max_new_tokens=16",
            "seed=0",
            "top_k=20",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.startswith("def f1") and len(gen.stdout) > len("def f1\n")
    assert "tokens/s" in gen.stderr
    n = int(gen.stderr.split("generated ")[1].split(" tokens")[0])
    assert 0 < n <= 16
