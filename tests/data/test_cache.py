"""Pre-tokenized memmap cache: round trip equals the streamed blocks; keyed; sharded; dtypes."""

from __future__ import annotations

import numpy as np
import torch

from nextok.data import LMDataModule, pack_blocks
from nextok.data.cache import build_cache, open_split
from nextok.data.packing import encode_stream


def _dm(tmp_path, corpus, **kw):
    base = dict(
        source="json",
        data_files=str(corpus),
        vocab_size=300,
        block_size=16,
        batch_size=4,
        shuffle=False,
        drop_last=False,
        run_dir=str(tmp_path / "run"),
    )
    dm = LMDataModule(**{**base, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _all_blocks(loader) -> torch.Tensor:
    return torch.cat([torch.cat([x, y[:, -1:]], 1) for x, y in loader])


def test_cache_round_trip_equals_streamed_blocks(tmp_path, jsonl_corpus):
    cache_dir = tmp_path / "cache"
    ref = _dm(tmp_path, jsonl_corpus)
    cached = _dm(tmp_path, jsonl_corpus, cache_dir=str(cache_dir), cache_shard_tokens=97)
    (key_dir,) = cache_dir.iterdir()
    assert len(list(key_dir.glob("train_*.bin"))) > 3  # sharded, blocks cross shard boundaries
    assert np.memmap(next(key_dir.glob("train_*.bin")), dtype=np.uint16).dtype == np.uint16
    assert torch.equal(_all_blocks(cached.train_dataloader()), _all_blocks(ref.train_dataloader()))
    assert torch.equal(_all_blocks(cached.val_dataloader()), _all_blocks(ref.val_dataloader()))
    # == the on-the-fly packer over the training documents
    train_docs, _ = ref.documents()
    texts = [list(train_docs["text"])]
    streamed = np.stack(
        list(pack_blocks(encode_stream(ref.tokenizer, texts, 0, np.dtype(np.uint16)), 16))
    )
    assert np.array_equal(_all_blocks(cached.train_dataloader()).numpy(), streamed)
    # random reads (shuffle) hit the same blocks
    cached.shuffle = True
    shuffled = _all_blocks(cached.train_dataloader())
    assert sorted(map(tuple, shuffled.tolist())) == sorted(map(tuple, streamed.tolist()))


def test_cache_is_reused_and_keyed_by_tokenizer(tmp_path, jsonl_corpus):
    cache_dir = tmp_path / "cache"
    a = _dm(tmp_path, jsonl_corpus, cache_dir=str(cache_dir))
    (key_dir,) = cache_dir.iterdir()
    stamp = (key_dir / "meta.json").stat().st_mtime_ns
    b = _dm(tmp_path, jsonl_corpus, cache_dir=str(cache_dir))
    assert b.cache_key() == a.cache_key() and (key_dir / "meta.json").stat().st_mtime_ns == stamp
    c = _dm(tmp_path / "other", jsonl_corpus, cache_dir=str(cache_dir), vocab_size=280)
    assert c.cache_key() != a.cache_key() and len(list(cache_dir.iterdir())) == 2
    d = _dm(tmp_path, jsonl_corpus, cache_dir=str(cache_dir), val_fraction=0.2)
    assert d.cache_key() != a.cache_key()


def test_uint32_cache_for_large_vocab(tmp_path):
    ids = np.array([0, 70_000, 65_535, 65_536, 123_456, 5], dtype=np.uint32)
    d = build_cache(
        tmp_path, "k", {"train": [ids[:4], ids[4:]]}, np.dtype(np.uint32), shard_tokens=4
    )
    toks = open_split(tmp_path, d.name, "train")
    assert toks.dtype == np.uint32 and len(toks) == 6
    assert np.array_equal(toks[0:6], ids) and np.array_equal(toks[3:5], ids[3:5])
