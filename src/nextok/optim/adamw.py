"""AdamW with weight decay on matrices only.

Why decay only matrices: decaying norm gains and biases pulls them towards 0 (a norm gain of 0
kills its residual branch) and decaying embedding rows that are rarely seen shrinks them for no
benefit; both are off by default and can be turned on per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")


@dataclass
class AdamWConfig:
    """AdamW hyper-parameters. ``lr`` is the peak learning rate (reached after warm-up)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    decay_norms_and_biases: bool = False
    implementation: str = "auto"  # auto | fused | foreach | for_loop
    grad_clip: float | None = 1.0  # max global grad norm; None or 0 = no clipping

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # Hydra passes a ListConfig
        if self.lr < 0:  # 0 is allowed: a run that must not move the weights (init_from checks)
            raise ValueError(f"optim.lr must be >= 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"optim.implementation must be one of {IMPLEMENTATIONS}, got {self.implementation!r}"
            )
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ValueError(f"optim.grad_clip must be >= 0 or null, got {self.grad_clip}")


def param_groups(model: nn.Module, cfg: AdamWConfig) -> list[dict]:
    """Split trainable parameters into decayed / not-decayed groups (tied weights counted once).

    Embedding tables (and a LM head tied to them) are "embeddings"; 1-D tensors are norm gains
    and biases; everything else with ``ndim >= 2`` is a matrix. Works on FSDP2-sharded (DTensor)
    parameters, which keep their names and dimensionality.
    """
    seen: set[int] = set()
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, nn.Embedding):
                (decay if cfg.decay_embeddings else no_decay).append(p)
            elif p.ndim < 2:
                (decay if cfg.decay_norms_and_biases else no_decay).append(p)
            else:
                decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def impl_kwargs(params: list[torch.Tensor], impl: str) -> dict:
    """``torch.optim.AdamW``'s implementation flags for ``optim.implementation``."""
    if impl == "auto":
        # Fused kernels: one launch per step on CUDA. DTensor (FSDP2) params use foreach.
        on_cuda = all(p.device.type == "cuda" for p in params)
        is_dtensor = any(
            type(p).__name__ == "DTensor" or type(p.data).__name__ == "DTensor" for p in params
        )
        impl = "fused" if on_cuda and not is_dtensor else "foreach"
    if impl == "fused":
        return {"fused": True}
    if impl == "foreach":
        return {"foreach": True}
    return {"foreach": False}


def build_adamw(model: nn.Module, cfg: AdamWConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of ``model``."""
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **impl_kwargs(params, cfg.implementation)
    )
