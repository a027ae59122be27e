"""Hugging Face import/export: every config field is read as transformers reads it (RoPE
scaling, sliding windows, BOS/pad signals, dropouts, dtypes, block size), or refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer

from helpers.tokenizers_bos import bos_tokenizer
from nextok.checkpoint import load_checkpoint
from nextok.data.tokenization.tokenizer import special_tokens
from nextok.dtypes import as_dtype, dtype_name
from nextok.hf import export_hf, import_hf
from nextok.hf.sliding import MAX_WINDOW_LAYERS_DEFAULT, SLIDING_DEFAULTS
from nextok.model import ModelConfig, Transformer

transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def saved(tmp_path, cls, name="m", **kw):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cls(**kw), attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn_like(p) + (1.0 if p.dim() == 1 else 0.0))
    model.save_pretrained(tmp_path / name)
    return tmp_path / name


def edit(folder, drop=(), **changes):
    f = folder / "config.json"
    c = json.loads(f.read_text())
    for k in drop:
        c.pop(k, None)
    c.update(changes)
    f.write_text(json.dumps(c))


def max_diff(folder, T, **kw):
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation="eager"
    ).eval()
    idx = torch.randint(0, 96, (1, T))
    with torch.no_grad():
        want = ref(idx).logits
        got = import_hf(folder, **kw)(idx)
    got = got[0] if isinstance(got, tuple) else got
    return (got - want).abs().max().item()


# ---------------------------------------------------------------- 1. rope_scaling vs rope_parameters
def test_rope_scaling_and_rope_parameters_that_disagree_are_refused(tmp_path):
    d = saved(tmp_path, transformers.LlamaConfig, max_position_embeddings=64, **TINY)
    edit(d, rope_scaling={"rope_type": "linear", "factor": 4.0})
    with pytest.raises(ValueError, match="rope_scaling=.*rope_parameters=.*disagree") as e:
        import_hf(d)
    assert "\n" not in str(e.value)


def test_rope_scaling_alone_or_agreeing_is_read_as_transformers_does(tmp_path):
    d = saved(tmp_path, transformers.LlamaConfig, max_position_embeddings=64, **TINY)
    theta = json.loads((d / "config.json").read_text())["rope_parameters"]["rope_theta"]
    same = {"rope_type": "linear", "factor": 4.0, "rope_theta": theta}
    edit(d, rope_parameters=same, rope_scaling={"type": "linear", "factor": 4.0})
    assert import_hf(d).config.rope_scaling == {"type": "linear", "factor": 4.0}
    assert max_diff(d, 40) < 1e-4
    edit(
        d,
        drop=["rope_parameters"],
        rope_theta=theta,
        rope_scaling={"type": "linear", "factor": 2.0},
    )
    assert import_hf(d).config.rope_scaling == {"type": "linear", "factor": 2.0}
    assert max_diff(d, 40) < 1e-4


# ---------------------------------------------------------------- 2. sliding windows
def test_sliding_window_defaults_are_transformers_defaults():
    for kind, cls in (
        ("mistral", transformers.MistralConfig),
        ("qwen2", transformers.Qwen2Config),
        ("qwen3", transformers.Qwen3Config),
        ("qwen3_moe", transformers.Qwen3MoeConfig),
        ("mixtral", transformers.MixtralConfig),
    ):
        field = cls.__dataclass_fields__ if hasattr(cls, "__dataclass_fields__") else None
        default = field["sliding_window"].default if field else cls().sliding_window
        assert SLIDING_DEFAULTS[kind] == default, kind
    assert transformers.Qwen2Config().max_window_layers == MAX_WINDOW_LAYERS_DEFAULT
    assert transformers.Qwen3Config().max_window_layers == MAX_WINDOW_LAYERS_DEFAULT


def test_missing_sliding_window_takes_the_family_default(tmp_path):
    d = saved(
        tmp_path,
        transformers.MistralConfig,
        max_position_embeddings=4608,
        sliding_window=None,
        **TINY,
    )
    edit(d, drop=["sliding_window"])  # transformers then slides with 4096
    assert transformers.AutoConfig.from_pretrained(d).sliding_window == 4096
    assert import_hf(d).config.sliding_window == 4096

    q = saved(
        tmp_path,
        transformers.Qwen2Config,
        "q",
        max_position_embeddings=4608,
        use_sliding_window=True,
        sliding_window=4096,
        max_window_layers=0,
        **TINY,
    )
    edit(q, drop=["sliding_window", "layer_types"])
    assert import_hf(q).config.sliding_window == 4096


def test_sliding_layers_computed_as_transformers_does(tmp_path):
    # use_sliding_window but every layer below max_window_layers: transformers slides none
    d = saved(
        tmp_path,
        transformers.Qwen2Config,
        max_position_embeddings=64,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=1,
        **TINY,
    )
    edit(d, drop=["layer_types"])
    assert transformers.AutoConfig.from_pretrained(d).layer_types == ["full_attention"]
    assert max_diff(d, 40) < 1e-4
    edit(d, max_window_layers=0)  # now layer 0 slides with a window of 8 < 40
    assert import_hf(d).config.slides(0)
    assert max_diff(d, 40) < 1e-4
    edit(d, layer_types=["full_attention"])  # explicit layer_types win
    assert max_diff(d, 40) < 1e-4


# ---------------------------------------------------------------- 3. explicit export family
def test_user_family_is_used_or_refused_never_replaced(tmp_path):
    model = Transformer(ModelConfig(vocab_size=96, block_size=32, n_layer=1, n_head=2, d_model=16))
    with pytest.raises(ValueError, match=r"family='gpt2' cannot express this model: it needs pos"):
        export_hf(model, tmp_path / "a", family="gpt2")
    with pytest.raises(ValueError, match=r"family='llamaa' is not one of \['gpt2', 'llama'"):
        export_hf(model, tmp_path / "a", family="llamaa")
    out = export_hf(model, tmp_path / "b", family="mistral")
    assert json.loads((out / "config.json").read_text())["model_type"] == "mistral"
    # a hint (the imported family) that does not fit falls back
    out = export_hf(model, tmp_path / "c", prefer="gpt2")
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"


def test_export_cli_refuses_an_incompatible_family(tmp_path):
    d = saved(
        tmp_path,
        transformers.LlamaConfig,
        max_position_embeddings=64,
        **{**TINY, "vocab_size": 320},
    )
    _bos_tokenizer(template=False).save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "nextok.cli.export",
            f"ckpt={d}",
            f"out={tmp_path}/o",
            "family=gpt2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "family='gpt2' cannot express this model" in r.stderr, r.stderr
    assert not (tmp_path / "o" / "config.json").exists()


# ---------------------------------------------------------------- 4. BOS signals
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def _bos_tokenizer(template: bool) -> Tokenizer:
    return bos_tokenizer(BOS, EOS, 96, template)


@pytest.mark.parametrize(
    "template, config, match",
    [
        (
            True,
            {"bos_token": BOS, "add_bos_token": False},
            "add_bos_token=False but tokenizer.json",
        ),
        (False, {"bos_token": BOS, "add_bos_token": True}, "add_bos_token=true but tokenizer.json"),
        (True, {}, "bos_token=None but tokenizer.json's post-processor prepends"),
    ],
)
def test_contradictory_bos_signals_are_refused(template, config, match):
    tok = _bos_tokenizer(template)
    config = {"eos_token": EOS, **config}
    with pytest.raises(ValueError, match=match + ".*set data.add_bos") as e:
        special_tokens(tok, config, where="f")
    assert "\n" not in str(e.value)
    if config.get("bos_token"):  # an explicit data.add_bos decides
        assert special_tokens(tok, config, add_bos=True).add_bos
        assert not special_tokens(tok, config, add_bos=False).add_bos


def test_agreeing_bos_signals_match_transformers(tmp_path):
    for template in (True, False):
        tok = _bos_tokenizer(template)
        d = tmp_path / str(template)
        d.mkdir()
        tok.save(str(d / "tokenizer.json"))
        cfg = {"bos_token": BOS, "eos_token": EOS, "tokenizer_class": "PreTrainedTokenizerFast"}
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))
        s = special_tokens(tok, cfg)
        ours = ([tok.token_to_id(BOS)] if s.add_bos else []) + tok.encode(
            "hello world", add_special_tokens=False
        ).ids
        assert transformers.AutoTokenizer.from_pretrained(d)("hello world").input_ids == ours


def test_pad_token_outside_vocabulary_is_refused():
    with pytest.raises(ValueError, match="pad_token='<pad>' is not in the vocabulary"):
        special_tokens(_bos_tokenizer(False), {"eos_token": EOS, "pad_token": "<pad>"})


# ---------------------------------------------------------------- 5. GPT-2 dropouts
def _gpt2(tmp_path):
    d = saved(
        tmp_path,
        transformers.GPT2Config,
        "g",
        vocab_size=320,  # >= the tokenizer's 258 tokens
        n_embd=32,
        n_layer=1,
        n_head=4,
        n_positions=64,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.0,
    )
    return d


def test_gpt2_unequal_dropouts_yield_to_an_override(tmp_path):
    d = _gpt2(tmp_path)
    with pytest.raises(ValueError, match="differ.*override model.dropout"):
        import_hf(d)
    assert import_hf(d, dropout=0.05).config.dropout == 0.05
    assert max_diff(d, 40, dropout=0.0) < 1e-4


def test_gpt2_unequal_dropouts_load_for_inference(tmp_path):
    d = _gpt2(tmp_path)
    _bos_tokenizer(template=False).save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    loaded = load_checkpoint(d)  # what nextok-generate / nextok-eval ckpt=<folder> call
    assert loaded.config.dropout == 0.0


def test_init_from_passes_the_dropout_override(tmp_path):
    from nextok.run.init_from import load_source

    d = _gpt2(tmp_path)
    assert load_source(str(d), {"dropout": 0.2}).config.dropout == 0.2


# ---------------------------------------------------------------- (a) dtype names
def test_dtype_names_have_one_home():
    for name in ("float32", "bfloat16", "float16"):
        assert dtype_name(as_dtype(name)) == name
    with pytest.raises(ValueError, match="no name"):
        dtype_name(torch.int8)


# ---------------------------------------------------------------- (e) a shorter block_size on load
def test_generate_runs_a_sliding_window_folder_at_full_length(tmp_path):
    kw = {**TINY, "vocab_size": 320}  # >= the tokenizer's 258 tokens
    d = saved(
        tmp_path, transformers.MistralConfig, max_position_embeddings=64, sliding_window=16, **kw
    )
    _bos_tokenizer(template=False).save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    assert load_checkpoint(d).config.block_size == 64
    assert load_checkpoint(d, block_size=16).config.block_size == 16
    cmd = [sys.executable, "-m", "nextok.cli.generate", f"ckpt={d}", "prompt=hello", "device=cpu"]
    r = subprocess.run([*cmd, "max_new_tokens=30"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_shorter_block_size_for_a_nextok_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=96, block_size=32, n_layer=1, n_head=2, d_model=16, pos="learned")
    model = Transformer(cfg).eval()
    tok = _bos_tokenizer(template=False)
    meta = {
        "model_config": cfg.to_dict(),
        "tokenizer_json": tok.to_str(),
        "special_tokens": special_tokens(tok, {"eos_token": EOS}).to_dict(),
    }
    sd = {f"model.{k}": v for k, v in model.state_dict().items()}
    from nextok.checkpoint import META_KEY

    torch.save({"state_dict": sd, META_KEY: meta}, tmp_path / "m.ckpt")
    short = load_checkpoint(tmp_path / "m.ckpt", block_size=16)
    assert short.model.pos_emb.weight.shape[0] == 16
    idx = torch.randint(0, 96, (1, 16))
    with torch.no_grad():
        assert torch.equal(short.model(idx)[0], model(idx)[0])
    with pytest.raises(ValueError, match="block_size=64 exceeds"):
        load_checkpoint(tmp_path / "m.ckpt", block_size=64)
