"""A split's token ids: encoded in memory, or once into the on-disk cache and memory-mapped.

Functions of a data module (``datamodule``: its config, documents and tokenizer); the cache
format is :mod:`nextok.data.cache`, its key :mod:`nextok.data.cache_key`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nextok.data import cache
from nextok.data.cache_key import cache_key
from nextok.data.documents import Documents
from nextok.data.packing import encode_stream, token_dtype
from nextok.data.sources import iter_texts

log = logging.getLogger(__name__)

# the data-module arguments that decide the token ids (with the tokenizer): the cache key's parts
KEY_FIELDS = (
    "source",
    "path",
    "name",
    "data_files",
    "split",
    "val_split",
    "val_fraction",
    "seed",
    "text_column",
    "document_unit",
    "encoding_errors",
)


def encode(datamodule: Any, docs: Documents) -> Iterator[np.ndarray]:
    """Chunks of token ids of ``docs``, each document followed by the EOS (and led by the BOS)."""
    dm = datamodule
    tok = dm.require_tokenizer()
    texts = iter_texts(docs, dm.text_column, dm.encode_batch_docs)
    return encode_stream(tok, texts, dm.eot_id, token_dtype(dm.vocab_size), dm.bos_id)


def cache_key_of(datamodule: Any) -> str:
    """The cache folder name for the data module's config and tokenizer."""
    dm = datamodule
    return cache_key(
        **{k: getattr(dm, k) for k in KEY_FIELDS},
        tokenizer_json=dm.require_tokenizer().to_str(),
        eos_id=dm.eot_id,
        bos_id=dm.bos_id,
    )


def ensure_cache(datamodule: Any) -> Path:
    """Tokenize both splits into ``cache_dir`` unless that cache exists; return its folder."""
    dm = datamodule
    key = cache_key_of(dm)
    for p in cache.remove_stale_temp_dirs(dm.cache_dir):
        log.info("removed %s (the temp dir of a cache build that was killed)", p)
    if not cache.cache_exists(dm.cache_dir, key):
        train, val = dm.documents()
        d = cache.build_cache(
            dm.cache_dir,
            key,
            {"train": encode(dm, train), "val": encode(dm, val)},
            token_dtype(dm.vocab_size),
            shard_tokens=dm.cache_shard_tokens,
            info={"source": dm.source, "path": dm.path, "name": dm.name},
        )
        log.info("tokenized cache written to %s", d)
    return Path(dm.cache_dir).expanduser() / key


def split_tokens(datamodule: Any, which: str) -> np.ndarray | cache.ShardedTokens:
    """All token ids of the ``train`` or ``val`` split; an error when not one block's worth."""
    dm = datamodule
    if dm.cache_dir:
        tokens = cache.open_split(dm.cache_dir, ensure_cache(dm).name, which, dm.vocab_size)
    else:
        train, val = dm.documents()
        chunks = list(encode(dm, train if which == "train" else val))
        dtype = token_dtype(dm.vocab_size)
        tokens = np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
    if len(tokens) < dm.block_size + 1:
        raise ValueError(
            f"the {which} split has {len(tokens)} tokens, fewer than one block of block_size+1="
            f"{dm.block_size + 1}; use more data or a smaller block_size"
        )
    return tokens
