"""Each family's config.json mapping, without weights: export -> import gives back the config
(every exported key is read back by the same family's table), and required keys are named."""

from __future__ import annotations

from dataclasses import fields

import pytest

from nextok.hf.families import FAMILIES
from nextok.hf.family import REQUIRED, UnsupportedConfig, fields_in
from nextok.model import ModelConfig

BASE = dict(vocab_size=96, block_size=32, n_layer=3, n_head=4, d_model=32)
LLAMA3 = dict(
    type="llama3",
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=16,
)
CASES = {
    "llama": dict(n_kv_head=2, tie_embeddings=False, rope_theta=5e5),
    "llama-biases": dict(qkv_bias=True, attn_out_bias=True, mlp_bias=True, norm_eps=1e-6),
    "llama-llama3-rope": dict(rope_scaling=LLAMA3),
    "llama-head-dim": dict(head_dim=16, rope_scaling=dict(type="linear", factor=2.0)),
    "qwen2": dict(qkv_bias=True, attn_out_bias=False, n_kv_head=1),
    "qwen3": dict(qk_norm=True, ffn_hidden=72),
    "mistral": dict(n_kv_head=2),
    "gpt2": dict(pos="learned", norm="layernorm", mlp="gelu", bias=True, dropout=0.1),
    "gpt2-exact-gelu": dict(
        pos="learned", norm="layernorm", mlp="gelu_exact", bias=True, ffn_hidden=80
    ),
    "qwen3_moe": dict(mlp="moe", qk_norm=True, first_k_dense=1, n_experts=4, moe_norm_topk=False),
    "mixtral": dict(mlp="moe", n_experts=4, moe_top_k=2, moe_ffn_hidden=24),
}
# what config.json does not carry: sizes are compared as computed (ffn_dim, moe_ffn_dim)
NOT_EXPORTED = {
    "ffn_hidden",
    "ffn_multiplier",
    "ffn_multiple_of",
    "moe_ffn_hidden",
    "init_std",
    "zero_init_proj",
    "moe_aux_loss_coef",
    "moe_z_loss_coef",
    "moe_bias_update_rate",
}


def computed(cfg: ModelConfig) -> dict:
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in NOT_EXPORTED}
    dense = [i for i in range(cfg.n_layer) if not cfg.is_moe_layer(i)]  # the only ffn_dim users
    return {**out, "ffn_dim": cfg.ffn_dim if dense else None, "moe_ffn_dim": cfg.moe_ffn_dim}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_json_round_trips(case):
    family = FAMILIES[case.split("-")[0]]
    cfg = ModelConfig(**BASE, **CASES[case])
    assert family.why_not(cfg) is None
    c = family.config_out(cfg)
    assert {f.hf for f in family.fields()} <= set(c)  # the table's keys are all written
    back = family.config_in(c, "config.json")
    assert computed(back) == computed(cfg)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_missing_required_fields_are_named_together(name):
    family = FAMILIES[name]
    required = [f.hf for f in family.fields() if f.default is REQUIRED and f.ours != "block_size"]
    assert len(required) >= 4
    c = family.config_out(ModelConfig(**BASE, **CASES[name]))
    for key in required[:2]:
        del c[key]
    with pytest.raises(UnsupportedConfig, match=rf"lacks \[{required[0]!r}, {required[1]!r}\]"):
        fields_in(family.fields(), c, "config.json")
