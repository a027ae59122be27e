"""AdamW with weight decay on matrices only, and step-wise learning-rate schedules.

Why decay only matrices: decaying norm gains and biases pulls them towards 0 (a norm gain of 0
kills its residual branch) and decaying embedding rows that are rarely seen shrinks them for no
benefit; both are off by default and can be turned on per group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

SCHEDULES = ("constant", "cosine", "wsd")
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


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, in optimizer steps.

    ``constant``: linear warm-up, then ``lr``. ``cosine``: warm-up, then cosine decay to
    ``min_lr`` at ``total_steps``. ``wsd`` (warmup-stable-decay, a.k.a. trapezoid): warm-up,
    constant ``lr``, then decay to ``min_lr`` over the last ``decay_fraction`` of training
    (``decay_shape`` linear, cosine or 1-sqrt). ``total_steps`` null = the trainer's ``max_steps``.
    """

    name: str = "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    total_steps: int | None = None
    decay_fraction: float = 0.2
    decay_shape: str = "linear"  # for wsd: linear | cosine | sqrt

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule.name must be one of {SCHEDULES}, got {self.name!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.min_lr < 0:
            raise ValueError(f"schedule.min_lr must be >= 0, got {self.min_lr}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(
                f"schedule.decay_fraction must be in [0, 1], got {self.decay_fraction}"
            )
        if self.decay_shape not in ("linear", "cosine", "sqrt"):
            raise ValueError(
                f"schedule.decay_shape must be linear, cosine or sqrt, got {self.decay_shape!r}"
            )


@dataclass
class LRSchedule:
    """Callable ``step -> lr multiplier`` for ``LambdaLR`` (a dataclass so it pickles/resumes)."""

    name: str
    warmup_steps: int
    total_steps: int
    min_ratio: float
    decay_fraction: float = 0.2
    decay_shape: str = "linear"

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.name == "constant":
            return 1.0
        if self.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        # wsd
        decay_steps = max(1, round(self.decay_fraction * self.total_steps))
        decay_start = max(self.warmup_steps, self.total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, self.total_steps - decay_start))
        if self.decay_shape == "cosine":
            frac = 0.5 * (1 + math.cos(math.pi * progress))
        elif self.decay_shape == "sqrt":
            frac = 1 - math.sqrt(progress)
        else:
            frac = 1 - progress
        return self.min_ratio + (1 - self.min_ratio) * frac


def make_schedule(cfg: ScheduleConfig, peak_lr: float, total_steps: int | None) -> LRSchedule:
    """Resolve ``cfg`` against the run length; decaying schedules need a finite length."""
    total = cfg.total_steps if cfg.total_steps is not None else total_steps
    if cfg.name != "constant" and (total is None or total <= 0 or math.isinf(total)):
        raise ValueError(
            f"the '{cfg.name}' learning-rate schedule needs a finite run length: set "
            "trainer.max_steps (or max_tokens, or schedule.total_steps), or use "
            "schedule=constant for a time-limited run"
        )
    if cfg.min_lr > peak_lr:
        raise ValueError(f"schedule.min_lr ({cfg.min_lr}) exceeds optim.lr ({peak_lr})")
    return LRSchedule(
        name=cfg.name,
        warmup_steps=cfg.warmup_steps,
        total_steps=int(total) if total is not None and not math.isinf(total) else 0,
        min_ratio=cfg.min_lr / peak_lr if peak_lr else 0.0,
        decay_fraction=cfg.decay_fraction,
        decay_shape=cfg.decay_shape,
    )


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


def _impl_kwargs(params: list[torch.Tensor], impl: str) -> dict:
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
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, **_impl_kwargs(params, cfg.implementation)
    )


def optim_config(value) -> AdamWConfig:  # noqa: ANN001 - a config object or its plain dict
    """An :class:`AdamWConfig` or :class:`~nextok.lit.muon.MuonConfig` from either kind or a dict
    (a checkpoint's hyper-parameters); the dict's keys decide which, unknown keys are an error."""
    from dataclasses import fields

    from nextok.lit.muon import MuonConfig

    if value is None:
        return AdamWConfig()
    if isinstance(value, AdamWConfig | MuonConfig):
        return value
    d = dict(value)
    for cls in (AdamWConfig, MuonConfig):
        if set(d) <= {f.name for f in fields(cls)}:
            return cls(**d)
    raise ValueError(f"optim: keys {sorted(d)} match neither AdamWConfig nor MuonConfig")


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:  # noqa: ANN001
    """AdamW, or Muon + AdamW (``optim=muon``), over ``model``'s parameters."""
    from nextok.lit.muon import MuonConfig, build_muon

    return build_muon(model, cfg) if isinstance(cfg, MuonConfig) else build_adamw(model, cfg)
