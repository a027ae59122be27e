"""One entry point: the optimizer config from a config object or a checkpoint's plain dict, and
the optimizer it describes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
from torch import nn

from nextok.optim.adamw import AdamWConfig, build_adamw
from nextok.optim.muon import MuonConfig, build_muon


def optim_config(
    value: AdamWConfig | MuonConfig | Mapping[str, Any] | None,
) -> AdamWConfig | MuonConfig:
    """An :class:`AdamWConfig` or :class:`~nextok.optim.muon.MuonConfig` from either kind or a dict
    (a checkpoint's hyper-parameters); the dict's keys decide which, unknown keys are an error."""
    if value is None:
        return AdamWConfig()
    if isinstance(value, AdamWConfig | MuonConfig):
        return value
    d = dict(value)
    for cls in (AdamWConfig, MuonConfig):
        if set(d) <= {f.name for f in fields(cls)}:
            return cls(**d)
    raise ValueError(f"optim: keys {sorted(d)} match neither AdamWConfig nor MuonConfig")


def build_optimizer(model: nn.Module, cfg: AdamWConfig | MuonConfig) -> torch.optim.Optimizer:
    """AdamW, or Muon + AdamW (``optim=muon``), over ``model``'s parameters."""
    return build_muon(model, cfg) if isinstance(cfg, MuonConfig) else build_adamw(model, cfg)
