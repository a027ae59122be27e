"""Optimizers and learning-rate schedules, plain PyTorch (no Lightning, no Hydra).

- ``adamw``: AdamW with weight decay on matrices only (``AdamWConfig``, ``param_groups``)
- ``muon``: Muon for hidden matrices + AdamW for the rest, as one optimizer (``MuonConfig``)
- ``newton_schulz``: Muon's orthogonalising update (dtype choice, expert banks, sharded params)
- ``schedule``: warm-up + constant / cosine / warmup-stable-decay (``ScheduleConfig``)
- ``build``: ``optim_config`` (object or plain dict) and ``build_optimizer``
"""

from nextok.optim.adamw import AdamWConfig, build_adamw, param_groups
from nextok.optim.build import build_optimizer, optim_config
from nextok.optim.muon import MuonAdamW, MuonConfig, build_muon
from nextok.optim.schedule import LRSchedule, ScheduleConfig, make_schedule

__all__ = [
    "AdamWConfig",
    "LRSchedule",
    "MuonAdamW",
    "MuonConfig",
    "ScheduleConfig",
    "build_adamw",
    "build_muon",
    "build_optimizer",
    "make_schedule",
    "optim_config",
    "param_groups",
]
