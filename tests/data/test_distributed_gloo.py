"""A real 2-process torch.distributed (gloo) run: ranks read disjoint shards covering everything.

Marked slow: two fresh interpreters importing torch + lightning + datasets (~10 s idle, over a
minute on a loaded 2-core machine). The same property is checked in-process in test_sharding.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest

from nextok.data import LMDataModule

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from nextok.data import LMDataModule

    corpus, run_dir, out = sys.argv[1:4]
    dist.init_process_group("gloo")
    dm = LMDataModule(source="json", data_files=corpus, vocab_size=300, block_size=16,
                      batch_size=3, drop_last=False, num_workers=2, run_dir=run_dir, seed=4)
    dm.setup("fit")  # rank and world size come from torch.distributed
    rows = [torch.cat([x, y[:, -1:]], 1) for x, y in dm.train_dataloader(even=False)]
    even = sum(len(x) for x, _ in dm.train_dataloader())
    np.save(out, torch.cat(rows).numpy())
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(2)]
    dist.all_gather(counts, torch.tensor([even]))
    assert counts[0] == counts[1], counts  # DDP default: equal batches per rank
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_cover_the_single_process_blocks(tmp_path, jsonl_corpus):
    run_dir = tmp_path / "run"
    dm = LMDataModule(
        source="json",
        data_files=str(jsonl_corpus),
        vocab_size=300,
        block_size=16,
        batch_size=3,
        drop_last=False,
        run_dir=str(run_dir),
        seed=4,
    )
    dm.prepare_data()  # "rank 0" trains and saves the tokenizer
    dm.setup("fit")
    single = Counter(
        map(tuple, np.concatenate([torch_rows(b) for b in dm.train_dataloader()]).tolist())
    )

    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": "2",
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(jsonl_corpus),
                str(run_dir),
                str(tmp_path / f"r{r}.npy"),
            ],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    r0, r1 = (np.load(tmp_path / f"r{r}.npy") for r in range(2))
    assert abs(len(r0) - len(r1)) <= 1
    assert Counter(map(tuple, np.concatenate([r0, r1]).tolist())) == single


def torch_rows(batch) -> np.ndarray:
    x, y = batch
    return np.concatenate([x.numpy(), y[:, -1:].numpy()], axis=1)
