"""An exported folder's tokenizer, loaded with ``AutoTokenizer`` as users do, gives the ids
nextok trained with, for every family export writes (or the family is refused in one line)."""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
from tokenizers import Regex, normalizers, pre_tokenizers

from helpers.tiny_models import logits, tiny_moe_config
from nextok.data import stdlib_files, train_bpe
from nextok.hf import export_hf
from nextok.hf.tokenizer_rebuild import _QWEN2_SPLIT
from nextok.model import ModelConfig, Transformer

transformers = pytest.importorskip("transformers")

ROPE = dict(vocab_size=400, block_size=32, n_layer=1, n_head=2, d_model=16)
GPT2 = dict(ROPE, pos="learned", norm="layernorm", mlp="gelu", bias=True)
# model_type -> the model config export writes as it (family= asks for it by name)
CASES = {
    "llama": ModelConfig(**ROPE),
    "qwen3": ModelConfig(**ROPE, qk_norm=True),
    "gpt2": ModelConfig(**GPT2),
    "mistral": ModelConfig(**ROPE),
    "qwen3_moe": tiny_moe_config(vocab_size=400, qk_norm=True),
    "mixtral": tiny_moe_config(vocab_size=400, moe_norm_topk=True),
}


@cache
def _texts() -> tuple[str, ...]:
    """40 real files of the Python standard library (code, docstrings, unicode)."""
    return tuple(f.read_text(encoding="utf-8", errors="replace") for f in stdlib_files()[:40])


@cache
def _tokenizer(qwen_pipeline: bool = False):
    """A nextok byte-level BPE (or one with Qwen2's normaliser and pre-tokenizer)."""
    tok = train_bpe(_texts()[:10], 400)
    if qwen_pipeline:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    return tok


def _differing(folder, tok) -> int:
    """How many of the texts AutoTokenizer encodes to other ids than ``tok`` (specials too)."""
    auto = transformers.AutoTokenizer.from_pretrained(folder, model_max_length=10**9)
    assert type(auto).__name__ != "PythonBackend"
    return sum(auto(t).input_ids != tok.encode(t).ids for t in _texts())


@pytest.mark.parametrize("family", sorted(CASES))
def test_auto_tokenizer_gives_nextoks_ids(tmp_path, family):
    torch.manual_seed(0)
    tok = _tokenizer()
    out = export_hf(Transformer(CASES[family]), tmp_path / family, tok, family=family)
    assert json.loads((out / "config.json").read_text())["model_type"] == family
    assert _differing(out, tok) == 0


def test_qkv_bias_exports_as_llama_with_a_zero_output_bias(tmp_path):
    """A native qkv_bias run: qwen2 would get Qwen2Tokenizer's other ids, so it is written as
    llama (attention_bias with o_proj.bias = 0, the same computation)."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**ROPE, qkv_bias=True)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("qkv.bias"):
                p.normal_()
    tok = _tokenizer()
    out = export_hf(model, tmp_path / "o", tok)
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    assert _differing(out, tok) == 0
    ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    idx = torch.randint(0, 400, (2, 32))
    assert (logits(ref, idx) - logits(model, idx)).abs().max() < 1e-5


def test_qwen2_only_with_the_tokenizer_transformers_rebuilds(tmp_path):
    model = Transformer(ModelConfig(**ROPE, qkv_bias=True))
    with pytest.raises(
        ValueError,
        match=r"family='qwen2' cannot express this model: it needs a "
        r"tokenizer Qwen2Tokenizer rebuilds exactly.*normalizer and pre_tokenizer",
    ):
        export_hf(model, tmp_path / "a", _tokenizer(), family="qwen2")
    assert not (tmp_path / "a").exists()
    # the imported family is a hint: with nextok's tokenizer it falls back to llama
    out = export_hf(model, tmp_path / "b", _tokenizer(), prefer="qwen2")
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    # a tokenizer that already is Qwen2's pipeline keeps qwen2, and AutoTokenizer agrees
    qwen = _tokenizer(qwen_pipeline=True)
    out = export_hf(model, tmp_path / "c", qwen, prefer="qwen2")
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"
    assert _differing(out, qwen) == 0
