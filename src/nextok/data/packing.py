"""Token stream -> packed blocks of ``block_size + 1`` ids -> shifted ``(x, y)`` pairs.

Documents are encoded in batches (``encode_batch``: parallel in Rust), each followed by the
tokenizer's EOS (``<|endoftext|>`` for nextok's own BPE) and preceded by its BOS when the
tokenizer asks for one, concatenated in document order, and cut into consecutive non-overlapping
blocks of ``block_size + 1`` ids. Only the final partial block is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype holding every id (uint16 up to 65536 ids, like nanoGPT's .bin)."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_documents(
    tokenizer: Tokenizer, texts: list[str], eot: int, dtype: np.dtype, bos: int | None = None
) -> np.ndarray:
    """Encode a batch of documents into one flat array: [bos] doc0 <eot> [bos] doc1 <eot> ..."""
    if not texts:
        return np.empty(0, dtype=dtype)
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encs = encode(texts, add_special_tokens=False)
    head = 0 if bos is None else 1
    lengths = [len(e.ids) + 1 + head for e in encs]
    out = np.empty(sum(lengths), dtype=dtype)
    pos = 0
    for e, n in zip(encs, lengths):
        if head:
            out[pos] = bos
        out[pos + head : pos + n - 1] = e.ids
        out[pos + n - 1] = eot
        pos += n
    return out


def encode_stream(
    tokenizer: Tokenizer,
    text_batches: Iterable[list[str]],
    eot: int,
    dtype: np.dtype,
    bos: int | None = None,
) -> Iterator[np.ndarray]:
    """Encode an iterable of text batches into an iterable of flat token chunks (order kept)."""
    for texts in text_batches:
        chunk = encode_documents(tokenizer, texts, eot, dtype, bos)
        if chunk.size:
            yield chunk


def pack_blocks(chunks: Iterable[np.ndarray], block_size: int) -> Iterator[np.ndarray]:
    """Cut a stream of token chunks into consecutive blocks of ``block_size + 1`` ids.

    Carries the remainder across chunks, so blocks ignore chunk boundaries; drops only the final
    partial block.
    """
    length = block_size + 1
    buf = np.empty(0, dtype=np.int64)
    for chunk in chunks:
        buf = (
            np.concatenate([buf, chunk.astype(np.int64, copy=False)])
            if buf.size
            else chunk.astype(np.int64)
        )
        n = buf.size // length
        if n:
            blocks = buf[: n * length].reshape(n, length)
            yield from blocks
            buf = buf[n * length :]


def num_blocks(num_tokens: int, block_size: int) -> int:
    return num_tokens // (block_size + 1)
