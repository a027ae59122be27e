"""The token cache's key: a hash of everything that decides the token ids.

Dataset config, local files' size and mtime (an edited file gets a new cache), the Python
version for the stdlib corpus, the held-out rule, and the tokenizer with its EOS/BOS. The key
format is part of the on-disk contract: caches written earlier are found again only while it
hashes the same parts in the same order.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from nextok.data.sources.stdlib import stdlib_root
from nextok.data.sources.text_files import flat_files

LOCAL_SOURCES = ("text", "json", "parquet")


def fingerprint(*parts: Any) -> str:
    """Short stable hash of config parts."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def source_stats(source: str, data_files: Any) -> list[tuple]:
    """(resolved path, size, mtime) of each named local file that exists (also a hub loader's
    ``data_files``); the stdlib's folder and the Python version for ``source=stdlib``."""
    stats: list[tuple] = []
    if source in LOCAL_SOURCES + ("hub",) and data_files is not None:
        for f in flat_files(data_files):
            p = Path(f)
            if p.exists():
                st = p.stat()
                stats.append((str(p.resolve()), st.st_size, int(st.st_mtime)))
    if source == "stdlib":
        stats.append((str(stdlib_root()), sys.version))
    return stats


def cache_key(
    *,
    source: str,
    path: str | None,
    name: str | None,
    data_files: Any,
    split: str,
    val_split: str | None,
    val_fraction: float,
    seed: int,
    text_column: str,
    document_unit: str,
    encoding_errors: str,
    tokenizer_json: str,
    eos_id: int,
    bos_id: int | None,
) -> str:
    """``<label>-<hash>``: the cache folder name for this data config and tokenizer."""
    held_out = None if val_split else (val_fraction, seed)
    parts = (
        source,
        path,
        name,
        data_files,
        source_stats(source, data_files),
        split,
        val_split,
        held_out,
        text_column,
        fingerprint(tokenizer_json, eos_id, bos_id),
        *((document_unit, encoding_errors) if source == "text" else ()),
    )
    label = (path or source).replace("/", "_")
    return f"{label}-{fingerprint(*parts)}"
