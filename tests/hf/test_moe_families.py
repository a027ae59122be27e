"""Qwen3-MoE and Mixtral: import from transformers' ``save_pretrained`` folders and export back,
logits equal transformers' (fp32, < 1e-4); a bias-balanced model refuses export in one line."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny_models import logits, random_hf_model, tiny_moe_config
from nextok.hf import export_hf, hf_family, import_hf
from nextok.model import Transformer

transformers = pytest.importorskip("transformers")

SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    num_experts_per_tok=2,
)
QWEN3_MOE = dict(SMALL, intermediate_size=48, moe_intermediate_size=16, num_experts=4)
CASES = {
    "qwen3_moe-first-dense": (
        transformers.Qwen3MoeConfig,
        dict(QWEN3_MOE, norm_topk_prob=True, mlp_only_layers=[0], head_dim=16),
    ),
    "qwen3_moe-unnormalised": (
        transformers.Qwen3MoeConfig,
        dict(QWEN3_MOE, norm_topk_prob=False, tie_word_embeddings=True),
    ),
    "mixtral": (
        transformers.MixtralConfig,
        dict(SMALL, intermediate_size=16, num_local_experts=4, sliding_window=None),
    ),
}


def hf_model(case: str):
    cls, kw = CASES[case]
    return random_hf_model(cls, **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_moe_import_export_logit_parity(tmp_path, case):
    ref = hf_model(case)
    ref.save_pretrained(tmp_path / "hf")
    idx = torch.randint(0, 96, (2, 24))
    want = logits(ref, idx)
    ours = import_hf(tmp_path / "hf")
    assert ours.config.mlp == "moe" and len(ours.moe_layers()) >= 2
    diff = (logits(ours, idx) - want).abs().max().item()
    assert diff < 1e-4, diff
    assert want.abs().max() > 1.0
    model_type = json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"]
    export_hf(ours, tmp_path / "out", family=model_type)
    again = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", attn_implementation="eager"
    ).eval()
    assert type(again) is type(ref)
    diff_out = (logits(again, idx) - want).abs().max().item()
    assert diff_out < 1e-4, diff_out
    print(f"[parity] {case}: import {diff:.1e}, export {diff_out:.1e}")


def test_family_choice_and_refusals(tmp_path):
    assert hf_family(tiny_moe_config(qk_norm=True)) == "qwen3_moe"
    assert hf_family(tiny_moe_config()) == "mixtral"
    with pytest.raises(ValueError, match="n_shared_experts=0"):
        hf_family(tiny_moe_config(n_shared_experts=1))
    model = Transformer(tiny_moe_config(qk_norm=True))
    with torch.no_grad():
        model.moe_layers()[0].expert_bias[1] = 0.5
    with pytest.raises(ValueError, match="expert_bias is non-zero"):
        export_hf(model, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # a refused export leaves no empty folder behind
