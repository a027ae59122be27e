"""A real ``nextok-train`` run has no host-device sync per optimizer step outside log steps.

The counter (``debug=host_syncs``, :mod:`nextok.lit.callbacks.host_syncs`) wraps the tensor methods that
copy values to the host and attributes each call to its optimizer step.
"""

from __future__ import annotations

import json
import os
import subprocess

from helpers.cli import console_cmd


def test_train_run_has_no_host_sync_per_step(tmp_path):
    run = tmp_path / "run"
    args = [
        f"hydra.run.dir={run}",
        "debug=host_syncs",
        "print_config=false",
        "callbacks.sampling=null",
        "model.n_layer=1",
        "model.d_model=32",
        "model.n_head=2",
        "model.n_kv_head=2",
        "model.block_size=32",
        "data.batch_size=4",
        "data.max_val_batches=2",
        "data.vocab_size=512",
        "data.tokenizer_train_bytes=300000",
        "trainer.max_steps=30",
        "trainer.val_check_interval=15",
        "trainer.log_every_n_steps=10",
        "global_batch_size=8",  # 2 accumulated micro-batches per optimizer step
    ]
    proc = subprocess.run(
        [*console_cmd("nextok-train", "nextok.train"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "[nextok] host syncs per optimizer step: steady 0.00" in proc.stdout
    summary = json.loads((run / "host_syncs.json").read_text())
    assert summary["steady"]["steps"] >= 20 and summary["steady"]["syncs_per_step"] == 0
    assert summary["log"]["steps"] >= 2 and summary["log"]["syncs_per_step"] > 0  # counted there
