"""``Transformer.flops_per_token`` against torch's own FLOP counter on forward + backward.

Convention: matmul FLOPs are 6 x (weights used in matmuls, LM head included, embedding lookups
not) per token; attention is 12 x layers x heads x head_dim x seq per token, the full T x T
score and value products in forward (4) and backward (8), not halved for the causal mask (PaLM,
Chowdhery et al. 2022, App. B; torch's counter uses the same convention).
"""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from nextok.model import ModelConfig, Transformer

aten = torch.ops.aten
B, T = 2, 32
VARIANTS = {
    "llama": dict(n_kv_head=2),
    "gpt2": dict(norm="layernorm", pos="learned", mlp="gelu", bias=True, ffn_multiplier=4.0),
    "untied_relu2_qknorm": dict(tie_embeddings=False, mlp="relu2", qk_norm=True),
}


def counted(model: Transformer, loss_impl: str) -> tuple[float, float]:
    """(matmul, attention) FLOPs of one forward + backward, from torch.utils.flop_counter."""
    model.loss_impl = loss_impl
    x = torch.randint(0, model.config.vocab_size, (B, T))
    # the math kernel spells attention as batched matmuls, which the counter sees on CPU
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    ops = counter.get_flop_counts()["Global"]
    matmul = sum(ops.get(op, 0) for op in (aten.mm, aten.addmm))
    return matmul, ops.get(aten.bmm, 0)


@pytest.mark.parametrize("loss_impl", ["chunked", "plain"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_flops_per_token_matches_torch_flop_counter(variant, loss_impl):
    cfg = ModelConfig(
        vocab_size=256, block_size=T, n_layer=2, n_head=4, d_model=64, **VARIANTS[variant]
    )
    model = Transformer(cfg)
    model.loss_chunk_rows = 24  # several chunks: the chunked loss's matmuls all counted
    matmul, attention = counted(model, loss_impl)
    ours_attention = 12.0 * cfg.n_layer * cfg.n_head * cfg.head_dim * T * (B * T)
    ours_matmul = model.flops_per_token(T) * B * T - ours_attention
    assert matmul == pytest.approx(ours_matmul, rel=0.02)
    assert attention == pytest.approx(ours_attention, rel=0.02)
