"""The tokenizer contract: nextok runs ``tokenizer.json`` as written (what a SentencePiece-derived
model was trained with), warns in one line when transformers' AutoTokenizer would rebuild it into
something that encodes differently, and exports it so that AutoTokenizer gives nextok's ids."""

from __future__ import annotations

import json
from functools import cache

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

from helpers.tiny_models import random_hf_model
from nextok.checkpoint import load_checkpoint
from nextok.data import stdlib_files
from nextok.hf import export_hf
from nextok.hf.tokenizer_rebuild import PROBES, rebuilt

transformers = pytest.importorskip("transformers")


@cache
def _paragraphs() -> tuple[str, ...]:
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in stdlib_files()[:10]]
    return tuple(p for t in texts for p in t.split("\n\n") if p.strip())


@cache
def _llama2_style() -> str:
    """A Llama-2 hub-style tokenizer.json: SentencePiece-derived BPE, byte fallback, the
    Prepend/Replace normaliser, a BOS template."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(_paragraphs()[:200], trainer)
    d = json.loads(tok.to_str())
    for i in range(256):
        d["model"]["vocab"].setdefault(f"<0x{i:02X}>", len(d["model"]["vocab"]))
    tok = Tokenizer.from_str(json.dumps(d))
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok.to_str()


def _folder(tmp_path, tok_json: str, tokenizer_class: str):
    d = tmp_path / "src"
    random_hf_model(
        transformers.LlamaConfig,
        vocab_size=1024,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=64,
    ).save_pretrained(d)
    (d / "tokenizer.json").write_text(tok_json)
    cfg = {"tokenizer_class": tokenizer_class, "bos_token": "<s>", "eos_token": "</s>"}
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "add_bos_token": True}))
    return d


def test_llama2_style_folder_warns_and_exports_nextoks_ids(tmp_path, capsys):
    d = _folder(tmp_path, _llama2_style(), "LlamaTokenizer")
    auto = transformers.AutoTokenizer.from_pretrained(d)
    tok = Tokenizer.from_str(_llama2_style())
    # the rebuild nextok models is the one transformers makes (so the warning is about it)
    assert type(auto).__name__ == "LlamaTokenizer"
    sim = rebuilt(tok, "LlamaTokenizer")
    assert all(auto(p).input_ids == sim.encode(p).ids for p in _paragraphs())
    differing = sum(auto(p).input_ids != tok.encode(p).ids for p in _paragraphs())
    assert differing > 0
    capsys.readouterr()
    loaded = load_checkpoint(d)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilds this tokenizer as LlamaTokenizer" in err[0], err
    assert "uses tokenizer.json as written" in err[0]
    # nextok encodes as tokenizer.json does, and its export gives users those ids
    out = export_hf(loaded.model, tmp_path / "out", loaded.tokenizer, loaded.special)
    again = transformers.AutoTokenizer.from_pretrained(out)
    assert all(again(p).input_ids == tok.encode(p).ids for p in _paragraphs())
    assert any(again(p).input_ids != auto(p).input_ids for p in PROBES)


def test_no_warning_when_transformers_runs_the_file(tmp_path, capsys):
    d = _folder(tmp_path, _llama2_style(), "PreTrainedTokenizerFast")
    capsys.readouterr()
    load_checkpoint(d)
    assert capsys.readouterr().err == ""
    assert type(transformers.AutoTokenizer.from_pretrained(d)).__name__ != "LlamaTokenizer"


def test_probe_finds_the_llama_difference():
    tok = Tokenizer.from_str(_llama2_style())
    other = rebuilt(tok, "LlamaTokenizer")
    assert any(tok.encode(p).ids != other.encode(p).ids for p in PROBES)


def test_qwen2_folder_with_a_byte_level_bpe_warns(tmp_path, capsys):
    """transformers builds Qwen2Tokenizer for any qwen2 folder; nextok's model of that rebuild
    matches it, and a byte-level BPE that it re-splits gets the one-line warning."""
    from test_export_tokenizer import _tokenizer

    d = tmp_path / "q"
    random_hf_model(
        transformers.Qwen2Config,
        vocab_size=512,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    ).save_pretrained(d)
    tok = _tokenizer()
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    auto = transformers.AutoTokenizer.from_pretrained(d)
    assert type(auto).__name__ == "Qwen2Tokenizer"
    sim = rebuilt(tok, "Qwen2Tokenizer")
    enc = dict(add_special_tokens=False)
    assert all(auto(p, **enc).input_ids == sim.encode(p, **enc).ids for p in _paragraphs())
    capsys.readouterr()
    load_checkpoint(d)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilds this tokenizer as Qwen2Tokenizer" in err[0], err
