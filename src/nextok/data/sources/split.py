"""Held-out validation documents, and reading texts in order, for any source's documents.

Map-style: a seeded random choice of documents (order kept). Streaming: a content hash decides,
so a document lands on the same side however the stream is sharded.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator

import datasets
import numpy as np

Documents = datasets.Dataset | datasets.IterableDataset


def _is_val_doc(text: str, val_fraction: float, seed: int) -> bool:
    """Content-hash split: the same document always lands on the same side, wherever it is read."""
    h = zlib.crc32(text.encode("utf-8", "replace"), seed & 0xFFFFFFFF)
    return (h % 1_000_000) < val_fraction * 1_000_000


def _keep(ex: dict, *, text_column: str, val_fraction: float, seed: int, val: bool) -> bool:
    return _is_val_doc(ex[text_column] or "", val_fraction, seed) == val


def split_train_val(
    ds: Documents, val_fraction: float, seed: int, text_column: str = "text"
) -> tuple[Documents, Documents]:
    """Hold out a deterministic fraction of documents for validation.

    Map-style: a seeded random choice of ``max(1, round(n * val_fraction))`` documents (order kept).
    Streaming: a content hash decides, so it is stable under any sharding.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"data.val_fraction must be in (0, 1) when there is no validation split (got {val_fraction})"
        )
    if isinstance(ds, datasets.Dataset):
        n = len(ds)
        if n < 2:
            raise ValueError(
                f"need at least 2 documents to hold out a validation set (got {n}); for text "
                "files, data.document_unit=paragraph or line makes several documents of one file"
            )
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        rng = np.random.default_rng(seed)
        is_val = np.zeros(n, dtype=bool)
        is_val[rng.choice(n, size=n_val, replace=False)] = True
        return ds.select(np.flatnonzero(~is_val)), ds.select(np.flatnonzero(is_val))
    # partials of a module-level function (not lambdas): picklable for spawned DataLoader workers
    train = ds.filter(
        functools.partial(
            _keep, text_column=text_column, val_fraction=val_fraction, seed=seed, val=False
        )
    )
    val = ds.filter(
        functools.partial(
            _keep, text_column=text_column, val_fraction=val_fraction, seed=seed, val=True
        )
    )
    return train, val


def iter_texts(
    ds: Documents, text_column: str = "text", batch_size: int = 256
) -> Iterator[list[str]]:
    """Yield lists of document texts in dataset order (batched reads are much faster)."""
    if isinstance(ds, datasets.Dataset):
        for i in range(0, len(ds), batch_size):
            yield [t or "" for t in ds[i : i + batch_size][text_column]]
    else:
        batch: list[str] = []
        for ex in ds:
            batch.append(ex[text_column] or "")
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def shuffled_texts(train: Documents, text_column: str, seed: int) -> Iterator[str]:
    """The documents' texts for BPE training.

    Map-style: in a seeded random order, so a byte cap (``tokenizer_train_bytes``) still samples
    the whole corpus. Streaming: in stream order."""
    if isinstance(train, datasets.Dataset):
        order = np.random.default_rng(seed).permutation(len(train))
        col = train.select_columns([text_column])
        for start in range(0, len(order), 256):
            yield from (t or "" for t in col.select(order[start : start + 256])[text_column])
    else:
        for ex in train:
            yield ex[text_column] or ""
