"""Tiny models shared by the model and Hugging Face tests (CPU-sized: built in milliseconds)."""

from __future__ import annotations

from typing import Any

import torch

from nextok.model import ModelConfig

# A two-layer Mixture-of-Experts model: 4 experts of width 16, top-2, GQA 4/2 heads.
TINY_MOE: dict[str, Any] = dict(
    vocab_size=97,
    block_size=32,
    n_layer=2,
    n_head=4,
    n_kv_head=2,
    d_model=32,
    mlp="moe",
    n_experts=4,
    moe_top_k=2,
    moe_ffn_hidden=16,
)


def tiny_moe_config(**overrides: Any) -> ModelConfig:
    """:data:`TINY_MOE` with ``overrides``."""
    return ModelConfig(**{**TINY_MOE, **overrides})


def random_hf_model(config_cls: type, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    """A transformers causal LM (eager attention, eval mode) with every tensor random and O(1)
    (norm weights around 1): a dropped bias, swapped norm or mis-mapped tensor changes logits."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        config_cls(**kwargs), attn_implementation="eager"
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if "norm" in name or "ln_" in name else 0.0) + 0.3 * torch.randn_like(p))
    return model.eval()


def logits(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Logits of ours (a ``(logits, loss)`` tuple) or of a transformers model, without grad."""
    with torch.no_grad():
        out = model(idx)
    return out[0] if isinstance(out, tuple) else out.logits
