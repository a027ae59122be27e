"""Rotary position embeddings (RoPE): inverse frequencies (with Llama 3.x / linear scaling),
precomputed cos/sin tables, and the rotation applied to queries and keys."""

from __future__ import annotations

import math

import torch
from torch import nn


def rope_inv_freq(
    head_dim: int, theta: float, scaling: dict | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """RoPE inverse frequencies, optionally scaled (``linear``, or ``llama3`` as in Llama 3.1).

    The same fp32 arithmetic as transformers' ``ROPE_INIT_FUNCTIONS``, so imported Llama 3.x
    models compute the same angles.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    if scaling is None:
        return inv_freq
    factor = float(scaling["factor"])
    if scaling["type"] == "linear":
        return inv_freq / factor
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_len = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE cos/sin tables (half-rotation convention, as in Hugging Face Llama)."""

    def __init__(
        self, head_dim: int, max_seq_len: int, theta: float, scaling: dict | None = None
    ) -> None:
        super().__init__()
        self.head_dim, self.max_seq_len, self.theta = head_dim, max_seq_len, theta
        self.scaling = scaling
        cos, sin = self._tables(torch.device("cpu") if on_meta_device() else None)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling, device)
        t = torch.arange(self.max_seq_len, device=device).float()
        freqs = torch.outer(t, inv_freq)
        return freqs.cos(), freqs.sin()

    def reset_parameters(self) -> None:
        """Recompute the tables in place (needed after meta-device initialisation)."""
        cos, sin = self._tables(self.cos.device)
        self.cos, self.sin = cos, sin

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for ``positions`` of shape (T,) or (B, T), broadcastable over heads."""
        cos, sin = self.cos[positions], self.sin[positions]
        return cos.unsqueeze(-3), sin.unsqueeze(-3)  # (..., 1, T, head_dim/2)


def on_meta_device() -> bool:
    """True inside ``torch.device("meta")``: modules are built without data (FSDP init)."""
    return torch.empty(0).device.type == "meta"


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) by position; pairs are (x[i], x[i + D/2])."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.type_as(x)
