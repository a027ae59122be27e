"""Sampling of every row of an engine step in one call, each row with its own parameters.

The rules and their order are :func:`nextok.generation.sample_next`'s (repetition penalty ->
temperature -> top-k -> top-p -> min-p -> draw), applied to all rows at once with the per-row
parameters as column tensors. Each row's draw uses its own generator and consumes it exactly as
``sample_next`` on that row alone does, so a request's tokens never depend on its companions and
equal the single-prompt path's with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nextok.generation import SamplingParams


def sample_rows(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
    seen: Sequence[torch.Tensor | None],
) -> torch.Tensor:
    """logits (R, V) -> (R,) token ids; ``seen[r]``: (1, V) bool of the tokens in row r so far
    (None: no repetition penalty)."""
    logits = logits.float()
    dev = logits.device
    penalised = [r for r, (p, s) in enumerate(zip(params, seen)) if s is not None]
    penalised = [r for r in penalised if params[r].repetition_penalty != 1.0]
    if penalised:
        rows = torch.tensor(penalised, device=dev)
        sub = logits.index_select(0, rows)
        pen = torch.tensor([params[r].repetition_penalty for r in penalised], device=dev)[:, None]
        hit = torch.cat([seen[r] for r in penalised])
        sub = torch.where(hit, torch.where(sub > 0, sub / pen, sub * pen), sub)
        logits = logits.index_copy(0, rows, sub)
    ids = logits.argmax(dim=-1)
    drawn = [r for r, p in enumerate(params) if not p.greedy]
    if not drawn:
        return ids
    rows = torch.tensor(drawn, device=dev)
    picked = [params[r] for r in drawn]
    x = logits.index_select(0, rows) / _column([p.temperature for p in picked], dev)
    x = _top_k(x, [p.top_k or 0 for p in picked])
    x = _top_p(x, [p.top_p if p.top_p is not None else 1.0 for p in picked])
    x = _min_p(x, [p.min_p or 0.0 for p in picked])
    probs = x.softmax(dim=-1)
    noise = torch.stack(
        [
            torch.empty_like(row).exponential_(1.0, generator=generators[r])
            for r, row in zip(drawn, probs)
        ]
    )
    return ids.index_copy(0, rows, (probs / noise).argmax(dim=-1))


def _column(values: list[float], device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)[:, None]


def _top_k(x: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """Rows with k in [1, V): all but their k largest logits -> -inf (ties at the k-th kept)."""
    vocab = x.size(-1)
    on = [0 < k < vocab for k in ks]
    if not any(on):
        return x
    top = torch.topk(x, max(k for k, o in zip(ks, on) if o), dim=-1).values
    at = torch.tensor([k - 1 if o else 0 for k, o in zip(ks, on)], device=x.device)
    drop = x < top.gather(1, at[:, None])
    drop &= torch.tensor(on, device=x.device)[:, None]
    return x.masked_fill(drop, float("-inf"))


def _top_p(x: torch.Tensor, ps: list[float]) -> torch.Tensor:
    """Rows with p < 1: keep the smallest most-likely prefix whose mass reaches p."""
    if all(p >= 1.0 for p in ps):
        return x
    p = _column([q if q < 1.0 else float("inf") for q in ps], x.device)
    sorted_x, order = torch.sort(x, dim=-1, descending=True)
    probs = sorted_x.softmax(dim=-1)
    drop_sorted = probs.cumsum(dim=-1) - probs >= p
    drop_sorted[..., 0] = False
    return x.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))


def _min_p(x: torch.Tensor, ms: list[float]) -> torch.Tensor:
    """Rows with min_p > 0: drop tokens below min_p x the best token's probability."""
    if not any(ms):
        return x
    probs = x.softmax(dim=-1)
    threshold = _column(ms, x.device) * probs.max(dim=-1, keepdim=True).values
    return x.masked_fill(probs < threshold, float("-inf"))
