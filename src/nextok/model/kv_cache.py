"""Preallocated key/value cache for incremental decoding."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for ``batch_size`` sequences of up to ``max_seq_len``.

    Only ``n_kv_head`` heads are stored (GQA/MQA keep the cache small). ``seq_len`` counts the
    positions filled so far; the model writes new keys at ``[seq_len, seq_len + T)`` in every
    layer and advances ``seq_len`` once per forward. ``valid`` is an optional per-position
    boolean mask (False = left padding) used for batched prompts of different lengths.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        max_seq_len: int,
        n_kv_head: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        shape = (n_layer, batch_size, n_kv_head, max_seq_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid: torch.Tensor | None = None
        self.seq_len = 0

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_seq_len(self) -> int:
        return self.k.shape[3]

    def truncate(self, seq_len: int) -> None:
        """Keep the first ``seq_len`` positions (speculative decoding drops rejected tokens).

        The stale keys/values past ``seq_len`` stay in memory and are overwritten by the next
        forward; nothing reads past ``seq_len``.
        """
        if not 0 <= seq_len <= self.seq_len:
            raise ValueError(f"cannot truncate a cache of {self.seq_len} positions to {seq_len}")
        self.seq_len = seq_len

    def mark_valid(self, valid: torch.Tensor) -> None:
        """Set which of the first ``valid.shape[1]`` positions are real tokens (B, n bool):
        speculative decoding turns a row's rejected positions into holes, hidden like padding."""
        n = valid.shape[1]
        if self.valid is None and bool(valid.all()):
            return
        if self.valid is None:
            self.valid = torch.ones(
                self.batch_size, self.max_seq_len, dtype=torch.bool, device=self.k.device
            )
        self.valid[:, :n] = valid

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``/``v`` of shape (B, n_kv_head, T, head_dim) and return all keys/values so far."""
        start, end = self.seq_len, self.seq_len + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def update_valid(self, attention_mask: torch.Tensor | None, t: int) -> torch.Tensor | None:
        """Record which of the next ``t`` positions are real tokens; return the mask so far."""
        start, end = self.seq_len, self.seq_len + t
        if attention_mask is None and self.valid is None:
            return None
        if self.valid is None:
            self.valid = torch.ones(
                self.batch_size, self.max_seq_len, dtype=torch.bool, device=self.k.device
            )
        self.valid[:, start:end] = True if attention_mask is None else attention_mask.bool()
        return self.valid[:, :end]


class AttentionCache:
    """A cache that owns key/value storage, positions and masking (serving's paged cache).

    With one, ``Transformer.forward`` takes ``idx`` of shape (1, N): the new tokens of several
    sequences laid end to end. Positions come from ``positions`` (1, N); each attention layer hands
    its new queries/keys/values to :meth:`attend`, which stores the keys/values and returns the
    attention output, so the cache decides which keys each query sees (a sliding-window layer's
    window included). ``logit_index`` (None: every
    position) picks the positions that need logits. Training and :class:`KVCache` never take this
    path, so their numerics are unchanged.
    """

    positions: torch.Tensor
    logit_index: torch.Tensor | None = None

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (1, n_head, N, head_dim), k/v (1, n_kv_head, N, head_dim) -> (1, n_head, N, head_dim)."""
        raise NotImplementedError
