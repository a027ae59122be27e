"""DDP task sharding: 2 gloo processes give exactly the single-process score."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.evals import tiny_model, tiny_tokenizer
from nextok.evals import evaluate_task, load_task, scoring_options

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_equal_one_process(tmp_path):
    model, tok = tiny_model(seed=1), tiny_tokenizer()
    tok.save(str(tmp_path / "tok.json"))
    torch.save(
        {"config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp_path / "model.pt"
    )
    # 23 items (odd, so the ranks get 12 and 11) with 2-5 options: unequal batch counts per rank
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(23):
        k = 2 + i % 4
        opts = [
            f" option {int(torch.randint(0, 99, (1,), generator=g))} {'x' * j}" for j in range(k)
        ]
        rows.append({"q": f"item {i}: pick one of", "options": opts, "answer": i % k})
    task = tmp_path / "toy.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "data_files": str(task),
        "context": "{q}",
        "choices": "options",
        "gold": "answer",
        "pmi": True,
    }
    assert scoring_options("toy", spec) == {"pmi": True}
    single = evaluate_task(
        model, tok, load_task("toy", spec), block_size=64, batch_size=2, pmi=True
    )

    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE="2",
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "dist_score_script.py"),
                    str(tmp_path / "model.pt"),
                    str(tmp_path / "tok.json"),
                    str(task),
                    str(tmp_path / "out"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out[-3000:]
    for rank in range(2):
        got = json.loads((tmp_path / f"out.{rank}").read_text())
        assert got["n"] == 23
        assert got["acc"] == pytest.approx(single.acc, abs=1e-12)
        assert got["acc_norm"] == pytest.approx(single.acc_norm, abs=1e-12)
        assert got["acc_pmi"] == pytest.approx(single.acc_pmi, abs=1e-12)
    for score in (single.acc, single.acc_norm, single.acc_pmi):  # scores that tell shards apart
        assert 0 < score < 1
