"""Sharding: ranks x DataLoader workers together yield exactly the single-process blocks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from nextok.data import LMDataModule, pack_blocks
from nextok.data.packing import encode_documents


def _rows(loader) -> list[tuple[int, ...]]:
    out = []
    for x, y in loader:
        assert torch.equal(x[:, 1:], y[:, :-1])
        out.extend(map(tuple, torch.cat([x, y[:, -1:]], dim=1).tolist()))
    return out


@pytest.fixture(scope="module")
def dm(tmp_path_factory, jsonl_corpus):
    dm = LMDataModule(
        source="json",
        data_files=str(jsonl_corpus),
        vocab_size=300,
        block_size=16,
        batch_size=3,
        drop_last=False,
        run_dir=str(tmp_path_factory.mktemp("run")),
        seed=11,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_two_ranks_two_workers_equal_single_process_multiset(dm):
    single = _rows(dm.train_dataloader(rank=0, world_size=1))
    n = len(dm.train_dataset())
    assert len(single) == n and len(set(single)) > 0.9 * n
    dm.loaders.num_workers = 2
    try:
        per_rank = [_rows(dm.train_dataloader(rank=r, world_size=2, even=False)) for r in range(2)]
    finally:
        dm.loaders.num_workers = 0
    assert Counter(per_rank[0] + per_rank[1]) == Counter(single)
    # shards are disjoint block index sets (the same block content may occur twice in a corpus)
    s0 = set(dm.train_sampler(0, 2, even=False))
    s1 = set(dm.train_sampler(1, 2, even=False))
    assert not s0 & s1 and s0 | s1 == set(range(n))


def test_even_shards_for_ddp_and_epoch_reshuffle(dm):
    n = len(dm.train_dataset())
    samplers = [dm.train_sampler(r, 3) for r in range(3)]
    idx = [list(s) for s in samplers]
    assert len({len(i) for i in idx}) == 1 and len({len(s) for s in samplers}) == 1
    flat = sum(idx, [])
    assert len(set(flat)) == len(flat) and n - len(flat) < 3
    for s in samplers:
        s.set_epoch(1)
    idx1 = [list(s) for s in samplers]
    assert idx1 != idx  # a new order each epoch
    assert [list(s) for s in samplers] == idx1  # deterministic given (seed, epoch)


def test_streaming_shards_are_disjoint_and_complete(tmp_path, jsonl_corpus):
    dm = LMDataModule(
        source="json",
        data_files=str(jsonl_corpus),
        streaming=True,
        shuffle=False,
        vocab_size=300,
        block_size=16,
        batch_size=2,
        run_dir=str(tmp_path),
        num_workers=2,
    )
    dm.prepare_data()
    dm.setup("fit")
    train_docs = [ex["text"] for ex in dm.documents()[0]]
    tok, eot = dm.tokenizer, dm.eot_id
    expected_rows: list[tuple[int, ...]] = []
    shard_docs = []
    for r in range(2):
        for w in range(2):
            ds = dm.streaming_dataset("train", rank=r, world_size=2)
            docs = [ex["text"] for ex in ds.shard_docs(0, r * 2 + w, 4)]
            shard_docs.append(docs)
            ids = encode_documents(tok, docs, eot, np.dtype(np.uint16))
            expected_rows += [tuple(b.tolist()) for b in pack_blocks([ids], 16)]
    flat = sum(shard_docs, [])
    assert sorted(flat) == sorted(train_docs) and len(flat) == len(train_docs)
    # each (rank, worker) stream is exactly its documents packed; one pass over all of them
    got = []
    for r in range(2):
        ds = dm.streaming_dataset("train", rank=r, world_size=2)
        ds.infinite = False
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
        got += _rows(loader)
    assert Counter(got) == Counter(expected_rows)
