"""nextok.data.cache_key: the key format is an on-disk contract (earlier caches are found again).

The keys are pinned: a change to the parts or their order fails these tests (caches written
by earlier versions would no longer be found)."""

from __future__ import annotations

import os

from nextok.data.cache_key import cache_key, source_stats

BASE = dict(
    source="hub",
    path="org/name",
    name="cfg",
    data_files=None,
    split="train",
    val_split=None,
    val_fraction=0.01,
    seed=1337,
    text_column="text",
    document_unit="file",
    encoding_errors="strict",
    tokenizer_json="T",
    eos_id=0,
    bos_id=None,
)


def test_keys_are_unchanged_from_the_datamodule_formula():
    assert cache_key(**BASE) == "org_name-d79b82218ef4a7ea"
    assert cache_key(**{**BASE, "val_split": "validation"}) == "org_name-6b966fadb1571a89"
    text = dict(
        BASE,
        source="text",
        path=None,
        name=None,
        data_files=["/nonexistent/a.txt"],
        val_fraction=0.05,
        seed=7,
        text_column="body",
        document_unit="paragraph",
        encoding_errors="replace",
        eos_id=3,
        bos_id=1,
    )
    assert cache_key(**text) == "text-0b29a82fb4dbb43a"


def test_a_held_out_fraction_only_matters_without_a_val_split():
    with_split = {**BASE, "val_split": "validation"}
    assert cache_key(**with_split) == cache_key(**{**with_split, "val_fraction": 0.5})
    assert cache_key(**BASE) != cache_key(**{**BASE, "val_fraction": 0.5})


def test_the_tokenizer_and_its_special_ids_change_the_key():
    keys = {
        cache_key(**{**BASE, **change})
        for change in ({}, {"tokenizer_json": "U"}, {"eos_id": 1}, {"bos_id": 2})
    }
    assert len(keys) == 4


def test_local_file_stats_follow_edits(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one")
    files = {"train": [str(f)], "validation": str(tmp_path / "missing.txt")}
    (stat,) = source_stats("text", files)
    assert stat == (str(f.resolve()), 3, int(f.stat().st_mtime))
    os.utime(f, (1, 1))
    assert source_stats("text", files)[0][2] == 1
    assert source_stats("hub", files) == source_stats("text", files)  # hub path=json data_files=
