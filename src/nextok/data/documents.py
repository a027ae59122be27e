"""The documents of one data config: its train and validation sets, and the texts a tokenizer
is trained on.

Validation is a real split (``val_split``) or a deterministic held-out fraction of the training
documents (:func:`nextok.data.sources.split_train_val`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np

from nextok.data.sources import load_source, split_train_val

Documents = datasets.Dataset | datasets.IterableDataset


def load_documents(
    source: str,
    *,
    split: str = "train",
    val_split: str | None = None,
    val_fraction: float = 0.01,
    seed: int = 1337,
    text_column: str = "text",
    **source_kwargs: Any,
) -> tuple[Documents, Documents]:
    """``(train, val)`` documents; ``source_kwargs`` go to :func:`load_source` (path, name,
    data_files, streaming, document_unit, encoding_errors)."""
    kw = dict(text_column=text_column, **source_kwargs)
    train = load_source(source, split, **kw)
    if val_split:
        return train, load_source(source, val_split, **kw)
    return split_train_val(train, val_fraction, seed, text_column)


def tokenizer_training_texts(train: Documents, text_column: str, seed: int) -> Iterator[str]:
    """The training documents' texts for BPE training.

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
