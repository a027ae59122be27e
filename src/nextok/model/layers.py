"""The parts of a transformer block: the norm, causal self-attention and the dense MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nextok.model.config import ModelConfig
from nextok.model.kv_cache import AttentionCache, KVCache
from nextok.model.rope import apply_rope


def norm_layer(cfg: ModelConfig, dim: int) -> nn.Module:
    """``cfg.norm`` over the last ``dim`` features: RMSNorm, or LayerNorm (bias per ``cfg.bias``)."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)


class ValueResidual(nn.Module):
    """``v + lamb * (v_first - v)``: a layer's values mixed with the first layer's values of the
    same tokens, with a learned scalar (ResFormer, Zhou et al. 2024; modded-nanogpt)."""

    def __init__(self) -> None:
        super().__init__()
        self.lamb = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.lamb, 0.5)

    def forward(self, v: torch.Tensor, v_first: torch.Tensor) -> torch.Tensor:
        return v + self.lamb.to(v.dtype) * (v_first - v)


class UNetSkips(nn.Module):
    """Learned weights of U-net skips: the output of block ``i`` (``i < n``) is added, times
    ``weight[i]``, to the input of its mirror block ``n_layer - 1 - i`` (modded-nanogpt)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


class Attention(nn.Module):
    """Causal self-attention with grouped-query heads, optional QK-norm and a KV cache.

    ``forward`` returns the output and this layer's values before any mixing (the first layer's
    feed the others' :class:`ValueResidual` when ``cfg.value_residual``).
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(
            cfg.d_model, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=cfg.qkv_bias
        )
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=cfg.attn_out_bias)
        self.proj.is_residual_proj = True  # scaled init, GPT-2 style
        self.q_norm = norm_layer(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.k_norm = norm_layer(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.dropout = cfg.dropout
        self.value_residual = ValueResidual() if cfg.value_residual and layer_idx > 0 else None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
        kv_cache: KVCache | AttentionCache | None,
        v_first: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(
            [
                self.n_head * self.head_dim,
                self.n_kv_head * self.head_dim,
                self.n_kv_head * self.head_dim,
            ],
            dim=-1,
        )
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v_own = v
        if self.value_residual is not None:  # per token, so a cache stores the mixed values
            v = self.value_residual(v, v_first)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if isinstance(kv_cache, AttentionCache):
            y = kv_cache.attend(self.layer_idx, q, k, v)
            return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)), v_own
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        # Full causal attention over the sequence itself uses the fused is_causal kernels.
        is_causal = mask is None and kv_cache is None and T > 1
        # enable_gqa: SDPA broadcasts the K/V heads; they are never materialised repeated
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)), v_own


class MLP(nn.Module):
    """SwiGLU (gate and up projections fused into one matmul), GELU (tanh or exact) or ReLU²."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kind = cfg.mlp
        hidden = cfg.ffn_dim
        self.fc = nn.Linear(
            cfg.d_model, 2 * hidden if cfg.mlp == "swiglu" else hidden, bias=cfg.mlp_bias
        )
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.mlp_bias)
        self.proj.is_residual_proj = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.kind == "gelu_exact":
            h = F.gelu(h)
        else:
            h = F.relu(h).square()
        return self.proj(h)
