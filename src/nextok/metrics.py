"""Tokenizer-independent validation metrics: bits per byte, kept as exact per-token sums.

``bpb = total nats / (ln 2 x total UTF-8 bytes of the predicted tokens)``. Every predicted
(target) token contributes its nats and the number of UTF-8 bytes it stands for, so runs with
different tokenizers or vocabulary sizes report comparable figures on the same text.

Byte counts per token id (:func:`token_byte_lengths`):

- byte-level BPE (GPT-2, Llama 3, Qwen, nextok's own): one byte per character of the token
  string (each character of the byte-level alphabet is one byte);
- SentencePiece-style (Metaspace / ``Replace("▁", " ")`` decoders, Llama 2, Mistral): ``<0xNN>``
  byte-fallback tokens are 1 byte, ``▁`` is a space, the rest is UTF-8 of the piece;
- added (non-special) tokens: the UTF-8 length of their content;
- special tokens (``<|endoftext|>``, BOS/EOS, padding): **0 bytes**. Their nats still count:
  predicting a document boundary costs bits, but it is not text.

Everything here is plain PyTorch/numpy (no Lightning), accumulated on the device without host
syncs; the caller reduces across ranks once per validation.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

import numpy as np
import torch
from tokenizers import Tokenizer

_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> frozenset[str]:
    """The 256 characters GPT-2's byte-level BPE uses for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return frozenset(chr(c) for c in cs)


def _decoder_types(node: dict | None) -> set[str]:
    if not node:
        return set()
    out = {node.get("type", "")}
    for child in node.get("decoders") or []:
        out |= _decoder_types(child)
    if node.get("type") == "Replace" and "▁" in json.dumps(
        node.get("pattern", {}), ensure_ascii=False
    ):
        out.add("Metaspace")
    return out


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 byte count of every token id (special tokens: 0); see the module docstring."""
    spec = json.loads(tokenizer.to_str())
    added = {t["id"]: t for t in spec.get("added_tokens") or []}
    types = _decoder_types(spec.get("decoder"))
    byte_level = "ByteLevel" in types
    metaspace = "Metaspace" in types
    alphabet = _byte_level_alphabet()
    n = tokenizer.get_vocab_size()
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        tok = tokenizer.id_to_token(i)
        if tok is None:
            continue
        if i in added:
            out[i] = 0 if added[i].get("special") else len(added[i]["content"].encode("utf-8"))
        elif byte_level and all(c in alphabet for c in tok):
            out[i] = len(tok)
        elif _BYTE_FALLBACK.fullmatch(tok):
            out[i] = 1
        else:
            out[i] = len((tok.replace("▁", " ") if metaspace else tok).encode("utf-8"))
    return out


def bits_per_byte(nats: float, num_bytes: float) -> float:
    """Total nats over total bytes, in bits (``nan`` for zero bytes)."""
    return nats / (math.log(2) * num_bytes) if num_bytes > 0 else float("nan")


class LossTally:
    """Per-group sums (nats, predicted tokens, bytes) on the device, without host syncs.

    A group is one validation source (one dataloader); :meth:`add` takes a batch's mean loss
    and its targets (``-100`` = ignored). ``token_bytes``: :func:`token_byte_lengths` as a tensor,
    or ``None`` to skip bytes (then no bpb).
    """

    def __init__(
        self, n_groups: int, token_bytes: torch.Tensor | None, device: torch.device | str
    ) -> None:
        self.sums = torch.zeros(3, n_groups, dtype=torch.float64, device=device)
        self.token_bytes = token_bytes.to(device) if token_bytes is not None else None

    def add(self, group: int, mean_loss: torch.Tensor, targets: torch.Tensor) -> None:
        valid = targets != -100
        n = valid.sum()
        self.sums[0, group] += mean_loss.detach().double() * n
        self.sums[1, group] += n
        if self.token_bytes is not None:
            ids = targets.clamp(0, self.token_bytes.numel() - 1)
            self.sums[2, group] += torch.where(valid, self.token_bytes[ids], 0).sum()

    def add_token_losses(self, group: int, nats: torch.Tensor, targets: torch.Tensor) -> None:
        """Per-token nats (same shape as ``targets``; ignored positions may hold anything)."""
        valid = targets != -100
        self.sums[0, group] += torch.where(valid, nats.detach().double(), 0).sum()
        self.sums[1, group] += valid.sum()
        if self.token_bytes is not None:
            ids = targets.clamp(0, self.token_bytes.numel() - 1)
            self.sums[2, group] += torch.where(valid, self.token_bytes[ids], 0).sum()


def summarize(sums: torch.Tensor | np.ndarray, with_bytes: bool = True) -> dict[str, float]:
    """``{"loss", "ppl", "bpb", "tokens", "bytes"}`` from one column of :class:`LossTally` sums."""
    nats, tokens, nbytes = (float(v) for v in sums)
    if tokens == 0:
        return {}
    loss = nats / tokens
    out = {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": tokens}
    if with_bytes:
        out["bpb"] = bits_per_byte(nats, nbytes)
        out["bytes"] = nbytes
    return out


__all__ = ["LossTally", "bits_per_byte", "summarize", "token_byte_lengths"]
