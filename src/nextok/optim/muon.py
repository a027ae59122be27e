"""Muon for the hidden weight matrices, AdamW for everything else, as one optimizer.

Muon (Jordan et al. 2024, ``torch.optim.Muon``) orthogonalises the momentum of a 2-D weight with
a Newton-Schulz iteration; it is meant for the matrices *inside* the network, MoE experts
included (each expert's matrices on their own, as Moonlight and Kimi K2 train experts with Muon;
an expert's fused gate/up matrix is one matrix, like the dense MLP's; ``moe_experts: adamw``
leaves the 3-D expert banks to AdamW). Under Muon the experts take Muon's ``weight_decay``. Embeddings, the LM head (tied or not), norm gains, biases
and MoE routers are trained by AdamW, as in modded-nanogpt and Moonlight.

:class:`MuonAdamW` presents both as one ``torch.optim.Optimizer``: its ``param_groups`` are the
two inner optimizers' groups (the same dicts), so one ``LambdaLR`` schedule scales every group's
own peak lr, and its ``state_dict`` is the standard single-optimizer format (checkpoints and exact
resume need nothing special).

The Muon half is :class:`nextok.optim.newton_schulz.Muon` (``torch.optim.Muon``'s update, with the
Newton-Schulz dtype as a choice and 3-D expert banks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nextok.model.moe import MoE
from nextok.optim.adamw import IMPLEMENTATIONS, AdamWConfig, impl_kwargs, param_groups
from nextok.optim.newton_schulz import NS_DTYPES, Muon, run_closure

ADJUST_LR = ("original", "match_rms_adamw")


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
    moe_experts: str = "muon"  # muon: every expert matrix by Muon | adamw: expert banks by AdamW
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
        if self.moe_experts not in ("muon", "adamw"):
            raise ValueError(f"optim.moe_experts must be muon or adamw, got {self.moe_experts!r}")
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
        """The AdamW half, for :func:`nextok.optim.adamw.param_groups`."""
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


def muon_parameters(model: nn.Module, experts: bool = True) -> list[nn.Parameter]:
    """The hidden matrices: weights of ``nn.Linear`` layers inside ``model.blocks`` and, when
    ``experts``, the 3-D MoE expert banks (``(experts, out, in)``: one matrix per expert).

    Not the embeddings or the LM head (outside the blocks), and not Linear layers flagged
    ``no_muon`` (MoE routers: a softmax over a handful of logits, better left to AdamW).
    """
    out, seen = [], set()
    for block in getattr(model, "blocks", []):
        for module in block.modules():
            if isinstance(module, nn.Linear) and not getattr(module, "no_muon", False):
                found = [module.weight]
            elif isinstance(module, MoE) and experts:
                found = [module.w_fc, module.w_proj]
            else:
                continue
            for p in found:
                if p.requires_grad and p.ndim in (2, 3) and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def muon_param_groups(model: nn.Module, cfg: MuonConfig) -> tuple[list[dict], list[dict]]:
    """``(muon_groups, adamw_groups)``: every trainable parameter in exactly one group. Muon's
    are the 2-D matrices, then (a group of their own, MoE models only) the expert banks."""
    muon = muon_parameters(model, experts=cfg.moe_experts == "muon")
    ids = {id(p) for p in muon}
    adamw = []
    for group in param_groups(model, cfg.adamw_config()):
        rest = [p for p in group["params"] if id(p) not in ids]
        if rest:
            adamw.append({**group, "params": rest})
    muon_groups = []
    for params in ([p for p in muon if p.ndim == 2], [p for p in muon if p.ndim == 3]):
        if params:
            muon_groups.append({"params": params, "weight_decay": cfg.weight_decay})
    return muon_groups, adamw


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
        try:
            super().load_state_dict(state_dict)  # rebuilds param_groups and state as new objects
        except ValueError as err:  # torch: "... parameter group that doesn't match the size ..."
            raise ValueError(
                f"the checkpoint's optimizer state does not fit optim=muon's parameter groups "
                f"({err}); resume with the optimizer settings it was trained with (optim=..., "
                "optim.moe_experts=...)"
            ) from err
        self._bind()

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = run_closure(closure)
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
        **impl_kwargs(params, cfg.implementation),
    )
    return MuonAdamW(muon, adamw)
