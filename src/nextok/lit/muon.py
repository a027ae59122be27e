"""Muon for the hidden weight matrices, AdamW for everything else, as one optimizer.

Muon (Jordan et al. 2024, ``torch.optim.Muon``) orthogonalises the momentum of a 2-D weight with
a Newton-Schulz iteration; it is meant for the matrices *inside* the network. Embeddings, the LM
head (tied or not), norm gains, biases, MoE routers and 3-D expert banks (``torch.optim.Muon``
takes 2-D tensors only) are trained by AdamW, as in modded-nanogpt and Moonlight.

:class:`MuonAdamW` presents both as one ``torch.optim.Optimizer``: its ``param_groups`` are the
two inner optimizers' groups (the same dicts), so one ``LambdaLR`` schedule scales every group's
own peak lr, and its ``state_dict`` is the standard single-optimizer format (checkpoints and exact
resume need nothing special).

The Muon half is :class:`Muon`: ``torch.optim.Muon``'s update with the Newton-Schulz iteration's
dtype as a choice (``ns_dtype``). torch runs it in bf16, right for GPU tensor cores; on CPUs
without bf16 matrix units bf16 matmuls are ~10x slower than fp32 ones, so ``auto`` uses fp32 off
CUDA (``benchmarks/optimizer_step.py`` measures both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nextok.lit.optim import IMPLEMENTATIONS, AdamWConfig, _impl_kwargs, param_groups

ADJUST_LR = ("original", "match_rms_adamw")
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}  # and "auto"


@dataclass
class MuonConfig:
    """Two groups of hyper-parameters: Muon's (``lr``, ``momentum``, ...) for hidden matrices and
    AdamW's (``adamw_*``) for the rest. ``lr`` is the schedule's reference peak lr: the schedule's
    multiplier (warm-up, decay, ``min_lr / lr``) applies to both groups' peaks alike."""

    lr: float = 0.02
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5
    weight_decay: float = 0.0
    adjust_lr_fn: str = "original"  # original (Keller) | match_rms_adamw (Moonlight)
    ns_dtype: str = (
        "auto"  # Newton-Schulz dtype: auto (bf16 on CUDA, else fp32) | bfloat16 | float32
    )
    adamw_lr: float = 3e-3
    adamw_betas: tuple[float, float] = (0.9, 0.95)
    adamw_eps: float = 1e-8
    adamw_weight_decay: float = 0.1
    decay_embeddings: bool = False
    decay_norms_and_biases: bool = False
    implementation: str = "auto"  # AdamW's: auto | fused | foreach | for_loop
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        self.adamw_betas = tuple(self.adamw_betas)  # Hydra passes a ListConfig
        if not hasattr(torch.optim, "Muon"):
            raise RuntimeError(
                f"optim=muon needs torch.optim.Muon (torch >= 2.9); this torch is {torch.__version__}"
            )
        if self.lr <= 0 or self.adamw_lr <= 0:
            raise ValueError(
                f"optim.lr and optim.adamw_lr must be positive, got {self.lr}, {self.adamw_lr}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"optim.momentum must be in [0, 1), got {self.momentum}")
        if not isinstance(self.ns_steps, int) or not 0 < self.ns_steps < 100:
            raise ValueError(f"optim.ns_steps must be an integer in [1, 99], got {self.ns_steps}")
        if self.adjust_lr_fn not in ADJUST_LR:
            raise ValueError(
                f"optim.adjust_lr_fn must be one of {ADJUST_LR}, got {self.adjust_lr_fn!r}"
            )
        if self.ns_dtype != "auto" and self.ns_dtype not in NS_DTYPES:
            raise ValueError(
                f"optim.ns_dtype must be auto, bfloat16 or float32, got {self.ns_dtype!r}"
            )
        if len(self.adamw_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adamw_betas):
            raise ValueError(
                f"optim.adamw_betas must be two numbers in [0, 1), got {list(self.adamw_betas)}"
            )
        if self.weight_decay < 0 or self.adamw_weight_decay < 0:
            raise ValueError("optim.weight_decay and optim.adamw_weight_decay must be >= 0")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"optim.implementation must be one of {IMPLEMENTATIONS}, got {self.implementation!r}"
            )
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ValueError(f"optim.grad_clip must be >= 0 or null, got {self.grad_clip}")

    def adamw_config(self) -> AdamWConfig:
        """The AdamW half, for :func:`nextok.lit.optim.param_groups`."""
        return AdamWConfig(
            lr=self.adamw_lr,
            betas=self.adamw_betas,
            eps=self.adamw_eps,
            weight_decay=self.adamw_weight_decay,
            decay_embeddings=self.decay_embeddings,
            decay_norms_and_biases=self.decay_norms_and_biases,
            implementation=self.implementation,
            grad_clip=self.grad_clip,
        )


def muon_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The hidden 2-D matrices: weights of ``nn.Linear`` layers inside ``model.blocks``.

    Not the embeddings or the LM head (outside the blocks), and not Linear layers flagged
    ``no_muon`` (MoE routers: a softmax over a handful of logits, better left to AdamW).
    """
    out, seen = [], set()
    for block in getattr(model, "blocks", []):
        for module in block.modules():
            if isinstance(module, nn.Linear) and not getattr(module, "no_muon", False):
                p = module.weight
                if p.requires_grad and p.ndim == 2 and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def muon_param_groups(model: nn.Module, cfg: MuonConfig) -> tuple[list[dict], list[dict]]:
    """``(muon_groups, adamw_groups)``: every trainable parameter in exactly one group."""
    muon = muon_parameters(model)
    ids = {id(p) for p in muon}
    adamw = []
    for group in param_groups(model, cfg.adamw_config()):
        rest = [p for p in group["params"] if id(p) not in ids]
        if rest:
            adamw.append({**group, "params": rest})
    muon_groups = [{"params": muon, "weight_decay": cfg.weight_decay}] if muon else []
    return muon_groups, adamw


def ns_dtype_for(device: torch.device, ns_dtype: str) -> torch.dtype:
    """The Newton-Schulz dtype for a matrix on ``device``: ``auto`` is bf16 on CUDA (as
    ``torch.optim.Muon``), fp32 elsewhere (bf16 matmuls are slow on CPUs without bf16 units)."""
    if ns_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return NS_DTYPES[ns_dtype]


def newton_schulz(
    g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype
) -> torch.Tensor:
    """Approximately orthogonalise ``g`` (US'V^T, S' ~ 1) with ``torch.optim.Muon``'s quintic
    iteration, computed in ``dtype``; the result is a new tensor (``g`` is never modified)."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T  # iterate on the smaller Gram matrix
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


# torch < 2.9 has no Muon: the class still defines (MuonConfig refuses optim=muon there).
_TorchMuon = getattr(torch.optim, "Muon", torch.optim.Optimizer)


class Muon(_TorchMuon):
    """``torch.optim.Muon`` (same groups, state and update) whose Newton-Schulz iteration runs in
    ``ns_dtype`` (see :func:`ns_dtype_for`); ``tests/lit/test_muon.py`` checks that the bf16
    update equals torch's bit for bit."""

    def __init__(self, params, *, ns_dtype: str = "auto", **kwargs: Any) -> None:  # noqa: ANN001
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype  # a compute choice, not a hyper-parameter: not in the state

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                update = newton_schulz(
                    update,
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                    ns_dtype_for(p.device, self.ns_dtype),
                )
                rows, cols = p.shape
                if group["adjust_lr_fn"] == "match_rms_adamw":
                    scale = 0.2 * math.sqrt(max(rows, cols))
                else:  # "original" (torch's default, also for None)
                    scale = math.sqrt(max(1.0, rows / cols))
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * scale)
        return loss


class MuonAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` and ``torch.optim.AdamW`` stepped together, seen as one optimizer."""

    def __init__(self, muon: torch.optim.Optimizer | None, adamw: torch.optim.Optimizer) -> None:
        self._inner = [o for o in (muon, adamw) if o is not None]
        self._sizes = [len(o.param_groups) for o in self._inner]
        # The base class appends the inner optimizers' group dicts as they are (not copies).
        super().__init__([g for o in self._inner for g in o.param_groups], defaults={})
        self._bind()

    def _bind(self) -> None:
        """Point the inner optimizers at this optimizer's groups and (shared) state."""
        start = 0
        for opt, n in zip(self._inner, self._sizes, strict=True):
            opt.param_groups = self.param_groups[start : start + n]
            opt.state = self.state  # keyed by parameter; the two sets are disjoint
            start += n

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # rebuilds param_groups and state as new objects
        self._bind()

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._inner:
            opt.step()
        return loss


def build_muon(model: nn.Module, cfg: MuonConfig) -> MuonAdamW:
    """Muon over :func:`muon_parameters`, AdamW (lr ``adamw_lr``) over the rest."""
    muon_groups, adamw_groups = muon_param_groups(model, cfg)
    muon = None
    if muon_groups:
        muon = Muon(
            muon_groups,
            ns_dtype=cfg.ns_dtype,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            ns_steps=cfg.ns_steps,
            weight_decay=cfg.weight_decay,
            adjust_lr_fn=cfg.adjust_lr_fn,
        )
    params = [p for g in adamw_groups for p in g["params"]]
    adamw = torch.optim.AdamW(
        adamw_groups,
        lr=cfg.adamw_lr,
        betas=cfg.adamw_betas,
        eps=cfg.adamw_eps,
        **_impl_kwargs(params, cfg.implementation),
    )
    return MuonAdamW(muon, adamw)
