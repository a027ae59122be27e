"""Attention masks: causal, sliding-window and left-padding masks for the model's forward, and
document masks for packed training blocks (``model.doc_mask``)."""

from __future__ import annotations

import torch


def causal_mask(
    start: int,
    end: int,
    valid: torch.Tensor | None,
    cached: bool,
    device: torch.device,
    window: int | None = None,
) -> torch.Tensor | None:
    """Boolean (T, S) or (B, 1, T, S) mask, or None when SDPA needs none.

    None means: no cache -> ``is_causal`` kernels; one cached decode token -> sees everything.
    ``window``: each query also sees only the last ``window`` positions (itself included);
    a window covering the whole sequence is full attention.
    """
    if window is not None and window >= end:
        window = None
    if valid is None and window is None and (not cached or end - start == 1):
        return None
    q_pos = torch.arange(start, end, device=device)
    k_pos = torch.arange(end, device=device)
    mask = k_pos[None, :] <= q_pos[:, None]
    if window is not None:
        mask = mask & (k_pos[None, :] > q_pos[:, None] - window)
    if valid is not None:
        # padded keys are hidden; each query still sees itself so no row is all -inf (NaN)
        mask = (mask & valid[:, None, None, :]) | (k_pos[None, :] == q_pos[:, None])
    return mask


def document_ids(idx: torch.Tensor, doc_start: int) -> torch.Tensor:
    """Per-position document index of packed blocks (B, T): a new document starts at each
    ``doc_start`` token (the BOS, or the EOS separator that opens the next document)."""
    return (idx == doc_start).cumsum(-1)


def within_documents(mask: torch.Tensor | None, doc_ids: torch.Tensor) -> torch.Tensor:
    """``mask`` (None: causal) restricted to keys of the query's own document: (B, 1, T, T)."""
    T = doc_ids.shape[-1]
    same_doc = doc_ids[:, None, :, None] == doc_ids[:, None, None, :]
    if mask is None:
        mask = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return same_doc & mask
