"""Pre-tokenized memmap cache: round trip equals the streamed blocks; keyed; sharded; dtypes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
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


def _damaged(tmp_path, corpus, damage) -> str:
    """Build a cache, apply ``damage(key_dir)``, open it again: the one-line refusal."""
    cache_dir = tmp_path / "cache"
    _dm(tmp_path, corpus, cache_dir=str(cache_dir), cache_shard_tokens=97)
    (key_dir,) = cache_dir.iterdir()
    damage(key_dir)
    with pytest.raises(ValueError) as err:
        _dm(tmp_path, corpus, cache_dir=str(cache_dir), cache_shard_tokens=97)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(f"delete the cache folder {key_dir} (the next run rebuilds it)")
    return message


def _poke(path, offset: int, value: int) -> None:
    ids = np.memmap(path, dtype=np.uint16, mode="r+")
    ids[offset] = value
    ids.flush()


def test_cache_records_sizes_and_checksums(tmp_path, jsonl_corpus):
    cache_dir = tmp_path / "cache"
    _dm(tmp_path, jsonl_corpus, cache_dir=str(cache_dir), cache_shard_tokens=97)
    (key_dir,) = cache_dir.iterdir()
    meta = json.loads((key_dir / "meta.json").read_text())
    for split, sizes in meta["splits"].items():
        files = sorted(key_dir.glob(f"{split}_*.bin"))
        assert [f.stat().st_size for f in files] == [2 * n for n in sizes]
        assert meta["sha256"][split] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]


def test_overwritten_ids_are_refused(tmp_path, jsonl_corpus):
    def damage(key_dir):
        shard = key_dir / "train_00001.bin"
        _poke(shard, 5, (int(np.memmap(shard, dtype=np.uint16)[5]) + 1) % 300)

    message = _damaged(tmp_path, jsonl_corpus, damage)
    assert "train_00001.bin: content differs from the SHA-256 recorded in meta.json" in message


def test_ids_past_the_vocabulary_are_refused(tmp_path, jsonl_corpus):
    """Also in a cache without checksums (as written before they were recorded)."""

    def damage(key_dir):
        meta = json.loads((key_dir / "meta.json").read_text())
        del meta["sha256"]
        (key_dir / "meta.json").write_text(json.dumps(meta))
        _poke(key_dir / "val_00000.bin", 3, 4000)

    message = _damaged(tmp_path, jsonl_corpus, damage)
    assert "val_00000.bin: holds id 4000, past the vocabulary of 300 ids" in message


def test_truncated_shard_is_refused(tmp_path, jsonl_corpus):
    def damage(key_dir):
        with open(key_dir / "train_00000.bin", "r+b") as f:
            f.truncate(100)

    message = _damaged(tmp_path, jsonl_corpus, damage)
    assert "train_00000.bin: 100 bytes, but meta.json records 97 tokens (194 bytes)" in message


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"dtype": "float64", "splits": {}}'])
def test_garbage_meta_json_is_refused(tmp_path, jsonl_corpus, text):
    message = _damaged(
        tmp_path, jsonl_corpus, lambda key_dir: (key_dir / "meta.json").write_text(text)
    )
    assert message.startswith(f"token cache {tmp_path / 'cache'}") and "meta.json: " in message
