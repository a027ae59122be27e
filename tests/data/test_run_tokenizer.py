"""nextok.data.tokenization.run_tokenizer and LMDataModule.prepare_tokenizer: one writer, waiting readers."""

from __future__ import annotations

import json
import threading
import time

import pytest

from nextok.data import LMDataModule, save_tokenizer, train_bpe
from nextok.data.tokenization.run_tokenizer import (
    check_vocab_size,
    wait_for_file,
    write_tokenizer_folder,
)
from nextok.data.tokenization.tokenizer import SpecialTokens


def _dm(corpus, run_dir, **kw):
    return LMDataModule(
        source="json",
        data_files=str(corpus),
        vocab_size=300,
        block_size=16,
        run_dir=str(run_dir),
        **kw,
    )


def test_writer_trains_and_writes_a_complete_tokenizer_folder(tmp_path, jsonl_corpus):
    dm = _dm(jsonl_corpus, tmp_path)
    dm.prepare_tokenizer(writer=True)
    assert (tmp_path / "tokenizer.json").read_text() == dm.tokenizer.to_str(pretty=True)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|endoftext|>" and config["add_bos_token"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]


def test_prepare_tokenizer_runs_once(tmp_path, jsonl_corpus):
    dm = _dm(jsonl_corpus, tmp_path)
    dm.prepare_tokenizer()
    tok, stamp = dm.tokenizer, (tmp_path / "tokenizer.json").stat().st_mtime_ns
    dm.prepare_tokenizer()
    dm.prepare_data()  # Lightning's hook inside fit: the tokenizer is already there
    assert dm.tokenizer is tok and (tmp_path / "tokenizer.json").stat().st_mtime_ns == stamp


def test_a_reader_waits_for_the_writers_file(tmp_path, jsonl_corpus, docs):
    tok = train_bpe(docs, vocab_size=300)
    reader = _dm(jsonl_corpus, tmp_path)

    def write_later():
        time.sleep(0.3)
        save_tokenizer(tok, tmp_path / "tokenizer.json")

    t = threading.Thread(target=write_later)
    t.start()
    reader.prepare_tokenizer(writer=False, timeout_s=30)
    t.join()
    assert reader.tokenizer.to_str() == tok.to_str()
    assert not (tmp_path / "tokenizer_config.json").exists()  # readers write nothing


def test_a_reader_gives_up_with_one_line(tmp_path):
    with pytest.raises(TimeoutError, match=r"waited 0s for rank 0 to write .*tokenizer.json"):
        wait_for_file(tmp_path / "tokenizer.json", timeout_s=0.2, poll_s=0.05)


def test_tokenizer_path_is_loaded_and_copied_into_the_run_dir(tmp_path, jsonl_corpus, docs):
    tok = train_bpe(docs, vocab_size=300)
    path = save_tokenizer(tok, tmp_path / "given" / "tokenizer.json")
    run = tmp_path / "run"
    dm = _dm(jsonl_corpus, run, tokenizer_path=str(path))
    dm.prepare_tokenizer(writer=True)
    assert (run / "tokenizer.json").read_text() == path.read_text()
    assert (run / "tokenizer_config.json").exists()


def test_folder_keeps_an_existing_tokenizer_json(tmp_path, docs):
    tok = train_bpe(docs, vocab_size=300)
    (tmp_path / "tokenizer.json").write_text("kept")
    write_tokenizer_folder(tmp_path, tok, SpecialTokens(eos="<|endoftext|>"))
    assert (tmp_path / "tokenizer.json").read_text() == "kept"


def test_a_larger_tokenizer_than_the_configured_vocab_is_refused(tmp_path, docs):
    tok = train_bpe(docs, vocab_size=300)
    with pytest.raises(ValueError, match=r"has \d+ tokens but data.vocab_size=260"):
        check_vocab_size(tok, 260, tmp_path / "tokenizer.json")
