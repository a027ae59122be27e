"""Sampling rules: turn one step's logits into the next token of each row.

Applied in a fixed order::

    repetition penalty -> temperature (0 = greedy) -> top-k -> top-p -> min-p -> draw
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class SamplingParams:
    """Validated sampling options; ``None`` (or the neutral value) disables a rule.

    temperature: 0 means greedy (argmax); otherwise logits are divided by it.
    top_k: keep the k most likely tokens (``None`` or 0: off).
    top_p: nucleus; keep the smallest most-likely prefix whose probability mass is >= top_p
        (``None`` or 1.0: off).
    min_p: keep tokens whose probability is >= min_p * (probability of the best token)
        (``None`` or 0: off).
    repetition_penalty: CTRL-style; logits of tokens already in the row (prompt or generated)
        are divided by it when positive and multiplied when negative (1.0: off).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (
            not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0
        ):
            raise ValueError(
                f"top_k must be a positive integer (or null/0 to disable), got {self.top_k!r}"
            )
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (or null to disable), got {self.top_p!r}")
        if self.min_p is not None and not 0.0 <= self.min_p < 1.0:
            raise ValueError(f"min_p must be in [0, 1) (or null to disable), got {self.min_p!r}")
        if self.repetition_penalty <= 0:
            raise ValueError(
                f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SamplingParams:
        """The sampling fields picked by name from a larger mapping (e.g. a CLI config); other
        keys are ignored, missing ones keep their defaults."""
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Penalise tokens marked in ``seen`` (B, V bool): divide positive logits, multiply negative."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set all but the ``k`` largest logits of each row to -inf (ties at the k-th value kept)."""
    if not k or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Keep the smallest prefix of most-likely tokens whose probability mass is >= ``p``.

    A token is dropped when the mass of the tokens ranked above it already reaches ``p``; the
    most likely token is always kept.
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float | None) -> torch.Tensor:
    """Drop tokens whose probability is below ``min_p`` times the best token's probability."""
    if not min_p:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, float("-inf"))


def _draw(probs: torch.Tensor, generator: GeneratorArg) -> torch.Tensor:
    """One categorical draw per row: argmax(p / Exp(1)) (exact, and sync-free on GPU).

    A sequence of generators gives each row its own random stream, so a row's sample does not
    depend on which other rows share its batch.
    """
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    else:
        if len(generator) != probs.size(0):
            raise ValueError(f"got {len(generator)} generators for a batch of {probs.size(0)} rows")
        noise = torch.stack(
            [
                torch.empty_like(row).exponential_(1.0, generator=g)
                for row, g in zip(probs, generator)
            ]
        )
    return (probs / noise).argmax(dim=-1)


def next_token_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution a (non-greedy) draw samples from: temperature, top-k, top-p, min-p,
    softmax over the last dimension of ``logits`` (any leading shape)."""
    logits = logits.float() / params.temperature
    logits = top_k_filter(logits, params.top_k)
    logits = top_p_filter(logits, params.top_p)
    logits = min_p_filter(logits, params.min_p)
    return logits.softmax(dim=-1)


def draw(probs: torch.Tensor, generator: GeneratorArg = None) -> torch.Tensor:
    """One categorical draw per row of ``probs`` (B, V); see :func:`_draw`."""
    return _draw(probs, generator)


def uniform(rows: int, n: int, generator: GeneratorArg, device: torch.device) -> torch.Tensor:
    """(rows, n) uniform draws in [0, 1); a sequence of generators gives each row its own."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(rows, n, generator=generator, device=device)
    if len(generator) != rows:
        raise ValueError(f"got {len(generator)} generators for a batch of {rows} rows")
    return torch.stack([torch.rand(n, generator=g, device=device) for g in generator])


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: GeneratorArg = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick the next token of each row from last-position logits (B, V); returns (B,) ids."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    return _draw(next_token_probs(logits, params), generator)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A seeded ``torch.Generator`` on ``device`` (None when ``seed`` is None)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
