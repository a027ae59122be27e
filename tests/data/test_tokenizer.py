"""Byte-level BPE: training, special tokens, round trip, save/reuse in run_dir, model checks."""

from __future__ import annotations

import time

import pytest

from nextok.data import (
    EOT,
    PAD,
    LMDataModule,
    load_tokenizer,
    save_tokenizer,
    stdlib_dataset,
    train_bpe,
)


def test_train_bpe_special_tokens_and_round_trip(docs):
    tok = train_bpe(docs, vocab_size=400, add_pad=True)
    assert tok.token_to_id(EOT) == 0 and tok.token_to_id(PAD) == 1
    assert 256 < tok.get_vocab_size() <= 400
    text = "déjà vu → 🐍 quick fox\n\tdef f(): return 1"
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text  # byte-level: any string round-trips
    assert tok.encode(EOT).ids == [0]


def test_train_bpe_on_a_few_mb_of_stdlib_takes_seconds():
    texts = list(stdlib_dataset()["text"])
    t0 = time.perf_counter()
    tok = train_bpe(texts, vocab_size=4096, max_bytes=3_000_000)
    dt = time.perf_counter() - t0
    assert tok.get_vocab_size() == 4096
    assert dt < 30, f"BPE training on 3 MB took {dt:.1f}s"
    # a trained BPE compresses Python well below 1 token per byte
    sample = texts[0]
    assert len(tok.encode(sample).ids) < 0.5 * len(sample.encode())


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="vocab_size must be at least"):
        train_bpe(["abc"], vocab_size=100)


def test_tokenizer_saved_to_run_dir_and_reused(tmp_path, jsonl_corpus):
    kw = dict(source="json", data_files=str(jsonl_corpus), vocab_size=320, block_size=16)
    dm = LMDataModule(**kw, run_dir=str(tmp_path))
    dm.prepare_data()
    f = tmp_path / "tokenizer.json"
    assert f.exists()
    assert load_tokenizer(tmp_path).to_str() == dm.tokenizer.to_str()
    mtime = f.stat().st_mtime_ns
    dm2 = LMDataModule(**kw, run_dir=str(tmp_path))
    dm2.setup("fit")  # no prepare_data on this "rank": loads the saved file
    assert f.stat().st_mtime_ns == mtime
    assert dm2.tokenizer.to_str() == dm.tokenizer.to_str()
    assert dm2.vocab_size == dm.vocab_size and dm2.eot_id == 0


def test_tokenizer_path_loads_existing(tmp_path, jsonl_corpus, docs):
    tok = train_bpe(docs, vocab_size=300)
    p = save_tokenizer(tok, tmp_path / "my_tok.json")
    dm = LMDataModule(
        source="json", data_files=str(jsonl_corpus), tokenizer_path=str(p), block_size=8
    )
    dm.prepare_data()
    assert dm.tokenizer.to_str() == tok.to_str()
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        load_tokenizer(tmp_path / "missing.json")


def test_tokenizer_without_eot_is_rejected(tmp_path, jsonl_corpus):
    from tokenizers import Tokenizer, models

    p = tmp_path / "plain.json"
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(p))
    dm = LMDataModule(source="json", data_files=str(jsonl_corpus), tokenizer_path=str(p))
    dm.prepare_data()
    with pytest.raises(ValueError, match="<\\|endoftext\\|>"):
        dm.setup("fit")


def test_validate_model(tmp_path, jsonl_corpus):
    dm = LMDataModule(source="json", data_files=str(jsonl_corpus), vocab_size=300, block_size=32)
    dm.prepare_data()
    dm.validate_model(vocab_size=dm.vocab_size, block_size=32)
    dm.validate_model(vocab_size=512, block_size=64)
    with pytest.raises(ValueError, match=r"tokenizer has 300 tokens but model.vocab_size=256"):
        dm.validate_model(vocab_size=256, block_size=32)
    with pytest.raises(ValueError, match=r"data.block_size=32 exceeds model.block_size=16"):
        dm.validate_model(vocab_size=300, block_size=16)


def test_reused_tokenizer_larger_than_configured_vocab(tmp_path, jsonl_corpus):
    kw = dict(source="json", data_files=str(jsonl_corpus), block_size=16, run_dir=str(tmp_path))
    LMDataModule(**kw, vocab_size=400).prepare_data()
    dm = LMDataModule(**kw, vocab_size=300)
    dm.prepare_data()
    with pytest.raises(ValueError, match="fresh run_dir"):
        dm.setup("fit")


@pytest.mark.parametrize(
    "content, why",
    [
        (b"{not json", "key must be a string at line 1 column 2"),
        (b'{"model": "\xff\xfe"}', "not UTF-8 text: byte 11 of 15 is b'\\xff'"),
        (b"[" * 100_000, "invalid type: sequence, expected struct Tokenizer"),
        (b'{"version": "1.0"}', "Model missing"),
    ],
)
def test_a_bad_tokenizer_json_is_one_line_naming_the_file(tmp_path, content, why):
    from nextok.data.tokenization.tokenizer import load_tokenizer

    f = tmp_path / "tokenizer.json"
    f.write_bytes(content)
    with pytest.raises(ValueError) as err:
        load_tokenizer(tmp_path)  # a folder holding one, as a run dir does
    assert str(err.value).startswith(f"{f} is not a valid tokenizer.json (")
    assert why in str(err.value) and "\n" not in str(err.value)
