"""Our model against Hugging Face's reference implementations, through the exporter."""

from __future__ import annotations

import pytest
import torch

from nextok.hf import export_hf, hf_family, import_hf
from nextok.model import ModelConfig, Transformer

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=101, block_size=64, n_layer=2, n_head=4, d_model=64)
LLAMA = dict(
    BASE,
    n_kv_head=2,
    norm="rmsnorm",
    pos="rope",
    mlp="swiglu",
    bias=False,
    rope_theta=500000.0,
)
GPT2 = dict(
    BASE,
    norm="layernorm",
    pos="learned",
    mlp="gelu",
    bias=True,
    tie_embeddings=True,
)


@pytest.mark.parametrize(
    "kw",
    [dict(LLAMA, tie_embeddings=False), dict(LLAMA, tie_embeddings=True), GPT2],
    ids=["llama-untied", "llama-tied", "gpt2"],
)
def test_logits_match_hugging_face_reference(tmp_path, kw):
    torch.manual_seed(0)
    ours = Transformer(ModelConfig(**kw)).eval()
    with torch.no_grad():  # non-trivial norm parameters, so a mix-up would show
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    export_hf(ours, tmp_path)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager"
    ).eval()
    idx = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], ref(idx).logits, atol=1e-4, rtol=1e-4)
    back = import_hf(tmp_path)
    for (k, a), b in zip(ours.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k


def test_incompatible_config_is_a_clear_error():
    with pytest.raises(ValueError, match="no exact Hugging Face equivalent"):
        hf_family(
            ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, d_model=8, mlp="relu2")
        )
