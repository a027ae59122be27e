"""Import / export against models written by transformers' own ``save_pretrained``.

For every family: random weights (biases and norms included, so a dropped or swapped tensor
shows), logits of our import equal transformers' (fp32, < 1e-4), our export loads back into
transformers with the same logits, and export -> import -> export is byte-identical.
"""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny_models import logits, random_hf_model
from nextok.hf import export_hf, import_hf

transformers = pytest.importorskip("transformers")

SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
LLAMA3 = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
CASES = {
    "llama-theta5e5": (
        transformers.LlamaConfig,
        dict(SMALL, rope_parameters={"rope_type": "default", "rope_theta": 5e5}),
    ),
    "llama3.1-scaling": (transformers.LlamaConfig, dict(SMALL, rope_parameters=LLAMA3)),
    "llama-linear-scaling": (
        transformers.LlamaConfig,
        dict(SMALL, rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 4.0}),
    ),
    "llama-biases": (transformers.LlamaConfig, dict(SMALL, attention_bias=True, mlp_bias=True)),
    "llama3.2-tied": (
        transformers.LlamaConfig,
        dict(SMALL, tie_word_embeddings=True, rope_parameters=LLAMA3),
    ),
    "smollm-tied-mha": (
        transformers.LlamaConfig,
        dict(
            SMALL,
            is_llama_config=True,  # SmolLM configs carry these nanotron fields
            rope_interleaved=False,
            num_key_value_heads=4,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1e5},
        ),
    ),
    "mistral": (transformers.MistralConfig, dict(SMALL, sliding_window=None, head_dim=16)),
    "qwen2-qkv-bias": (transformers.Qwen2Config, dict(SMALL, tie_word_embeddings=True)),
    "qwen3-qk-norm": (transformers.Qwen3Config, dict(SMALL, head_dim=16)),
    "qwen3-attention-bias": (transformers.Qwen3Config, dict(SMALL, attention_bias=True)),
    "gpt2-tied": (
        transformers.GPT2Config,
        dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    ),
    "gpt2-untied-gelu": (
        transformers.GPT2Config,
        dict(
            vocab_size=96,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            tie_word_embeddings=False,
            activation_function="gelu",
            n_inner=80,
        ),
    ),
}


def hf_model(case: str, seed: int = 0):
    cls, kw = CASES[case]
    return random_hf_model(cls, seed, **kw)


def load_ref(path, **kw):
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, attn_implementation="eager", **kw
    ).eval()


def folder_bytes(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != "README.md"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_matches_transformers_and_round_trips(tmp_path, case):
    ref = hf_model(case)
    ref.save_pretrained(tmp_path / "hf")
    idx = torch.randint(0, 96, (2, 40))
    want = logits(ref, idx)

    ours = import_hf(tmp_path / "hf")
    diff = (logits(ours, idx) - want).abs().max().item()
    assert diff < 1e-4, diff
    assert want.abs().max() > 1.0  # a real signal, not near-zero logits

    model_type = json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"]
    export_hf(ours, tmp_path / "out", family=model_type)
    again = load_ref(tmp_path / "out")
    assert type(again) is type(ref)
    diff_out = (logits(again, idx) - want).abs().max().item()
    assert diff_out < 1e-4, diff_out

    export_hf(import_hf(tmp_path / "out"), tmp_path / "out2", family=model_type)
    assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "out2")
    print(f"[parity] {case}: import {diff:.1e}, export {diff_out:.1e}, re-export bitwise")


def test_sharded_and_bf16_folders(tmp_path):
    ref = hf_model("llama3.1-scaling")
    ref.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    idx = torch.randint(0, 96, (1, 33))
    assert (logits(import_hf(tmp_path / "sharded"), idx) - logits(ref, idx)).abs().max() < 1e-4

    ref.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    ref32 = load_ref(tmp_path / "bf16", dtype=torch.float32)  # the same bf16 values, upcast
    ours = import_hf(tmp_path / "bf16")
    assert ours.tok_emb.weight.dtype == torch.float32
    assert (logits(ours, idx) - logits(ref32, idx)).abs().max() < 1e-4


def test_export_sharded_bf16_mode_0644(tmp_path):
    ours = import_hf(_saved(tmp_path, "qwen3-qk-norm"))
    out = export_hf(ours, tmp_path / "out", dtype="bf16", max_shard_size="30KB")
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p
    assert next(iter(load_ref(out, dtype="auto").parameters())).dtype == torch.bfloat16
    ref = load_ref(out, dtype=torch.float32)
    back = import_hf(out)  # bf16 values, upcast: equal to transformers' upcast
    idx = torch.randint(0, 96, (1, 20))
    assert (logits(back, idx) - logits(ref, idx)).abs().max() < 1e-4


def test_re_export_switches_layout_and_a_failed_one_keeps_the_old_weights(tmp_path, monkeypatch):
    ours = import_hf(_saved(tmp_path, "qwen3-qk-norm"))
    out = export_hf(ours, tmp_path / "out", max_shard_size="30KB")
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
    export_hf(ours, out)  # one file now: the shards and their index are gone
    names = sorted(p.name for p in out.glob("*.safetensors*"))
    assert names == ["model.safetensors"]
    before = (out / "model.safetensors").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("nextok.hf.weights.save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_hf(ours, out, max_shard_size="30KB")
    assert (out / "model.safetensors").read_bytes() == before  # the old weights, whole
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files


def _saved(tmp_path, case, **overrides):
    cls, kw = CASES[case]
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cls(**{**kw, **overrides})).save_pretrained(
        tmp_path / case
    )
    return tmp_path / case


def _edit_config(folder, **changes):
    f = folder / "config.json"
    c = json.loads(f.read_text())
    c.update(changes)
    f.write_text(json.dumps(c))


@pytest.mark.parametrize(
    "change, match",
    [
        (
            dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}),
            "rope_type='yarn'",
        ),
        (dict(hidden_act="gelu"), "hidden_act='gelu'"),
        (dict(some_new_field=3), "unknown field.*some_new_field"),
        (dict(model_type="gemma2"), "model_type 'gemma2' is not supported"),
        (dict(architectures=["LlamaForSequenceClassification"]), "architectures"),
        (dict(partial_rotary_factor=0.5), "partial_rotary_factor"),
        (dict(rope_theta=1234.0), "rope_theta=1234.0.*contradicts"),
        (dict(attention_dropout=0.1), "attention_dropout"),
        (dict(num_hidden_layers=3), r"lacks tensor\(s\) \['model.layers.2"),
        (dict(num_hidden_layers=1), "tensor.*the config does not account for"),
        (dict(quantization_config={"quant_method": "gptq"}), "quantization_config"),
        (dict(rope_interleaved=True), "rope_interleaved=True"),
    ],
)
def test_unsupported_llama_fields_are_one_line_errors(tmp_path, change, match):
    folder = _saved(tmp_path, "llama-theta5e5")
    _edit_config(folder, **change)
    with pytest.raises(ValueError, match=match) as err:
        import_hf(folder)
    assert "\n" not in str(err.value)


def test_sliding_window_is_kept_at_any_block_size(tmp_path):
    folder = _saved(tmp_path, "mistral", sliding_window=16)
    assert import_hf(folder).config.sliding_window == 16
    assert import_hf(folder, block_size=16).config.block_size == 16
    q = _saved(
        tmp_path, "qwen2-qkv-bias", use_sliding_window=True, sliding_window=8, max_window_layers=0
    )
    assert import_hf(q).config.sliding_window == 8


def test_gpt2_unsupported_activation_and_scaling(tmp_path):
    folder = _saved(tmp_path, "gpt2-tied")
    _edit_config(folder, activation_function="quick_gelu")
    with pytest.raises(ValueError, match="activation_function='quick_gelu'"):
        import_hf(folder)
    _edit_config(folder, activation_function="gelu_new", scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        import_hf(folder)


def test_pickle_weights_are_refused(tmp_path):
    folder = _saved(tmp_path, "llama-theta5e5")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        import_hf(folder)


def test_shorter_block_size_cuts_learned_positions(tmp_path):
    ref = hf_model("gpt2-tied")
    ref.save_pretrained(tmp_path / "g")
    ours = import_hf(tmp_path / "g", block_size=32)
    assert ours.pos_emb.weight.shape[0] == 32
    idx = torch.randint(0, 96, (1, 32))
    assert (logits(ours, idx) - logits(ref, idx)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="block_size=65 exceeds n_positions=64"):
        import_hf(tmp_path / "g", block_size=65)
