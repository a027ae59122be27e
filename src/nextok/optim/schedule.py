"""Step-wise learning-rate schedules (warm-up, then constant, cosine or warmup-stable-decay)."""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "cosine", "wsd")


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
