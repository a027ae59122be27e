"""Checks of a token cache on open: ``meta.json`` parses, every shard has the recorded size and
SHA-256, and no id lies past the vocabulary.

A cache lives for many runs in a shared folder (``~/.cache/nextok/tokens``): a disk error, a
truncated copy or an edit would otherwise be read as training data, or fail deep inside numpy
("mmap length is greater than file size") or the embedding (an ``IndexError``). Every refusal
is one line naming the file and the fix: delete the cache folder, the next run rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META = "meta.json"
READ_CHUNK_TOKENS = 1 << 24  # hash and scan a shard in pieces of this many ids (32-64 MB)


class CacheError(ValueError):
    """A token cache that cannot be used as it is (a ``ValueError``: one line in the CLIs)."""

    def __init__(self, path: Path, problem: str) -> None:
        folder = path if path.is_dir() else path.parent
        super().__init__(
            f"token cache {path}: {problem}; delete the cache folder {folder} "
            "(the next run rebuilds it)"
        )


@dataclass(frozen=True)
class CacheMeta:
    """What ``meta.json`` records: the id dtype, token counts and (newer caches) SHA-256s."""

    dtype: np.dtype
    splits: dict[str, list[int]]
    sha256: dict[str, list[str]]

    def shards(self, split: str) -> list[tuple[int, str | None]]:
        """``(tokens, sha256 or None)`` of each shard of ``split``."""
        digests = self.sha256.get(split) or [None] * len(self.splits[split])
        return list(zip(self.splits[split], digests, strict=True))


def read_meta(folder: Path) -> CacheMeta:
    """Parse ``folder/meta.json``; a :class:`CacheError` for anything not of the expected shape."""
    path = folder / META
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        meta = CacheMeta(np.dtype(raw["dtype"]), dict(raw["splits"]), dict(raw.get("sha256", {})))
        for split, sizes in meta.splits.items():
            if not all(isinstance(n, int) and n >= 0 for n in sizes):
                raise ValueError(f"split {split!r} sizes are not token counts")
            meta.shards(split)  # the digests match the shards one for one
    except FileNotFoundError:
        raise CacheError(path, "missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CacheError(path, f"unreadable ({err})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CacheError(path, f"not a token cache index ({type(err).__name__}: {err})") from None
    if meta.dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise CacheError(path, f"dtype {meta.dtype} is not uint16 or uint32")
    return meta


def verified_shard(
    folder: Path,
    name: str,
    dtype: np.dtype,
    n_tokens: int,
    sha256: str | None,
    vocab_size: int | None,
) -> np.memmap:
    """The shard memory-mapped read-only, once its size, SHA-256 (when recorded) and largest id
    (when ``vocab_size`` is given) were checked."""
    path = folder / name
    expected = n_tokens * dtype.itemsize
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CacheError(path, "missing") from None
    if size != expected:
        raise CacheError(
            path, f"{size} bytes, but meta.json records {n_tokens} tokens ({expected} bytes)"
        )
    tokens = np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))
    digest = hashlib.sha256()
    largest = 0
    for start in range(0, n_tokens, READ_CHUNK_TOKENS):
        part = np.ascontiguousarray(tokens[start : start + READ_CHUNK_TOKENS])
        digest.update(memoryview(part).cast("B"))
        largest = max(largest, int(part.max()))
    if sha256 is not None and digest.hexdigest() != sha256:
        raise CacheError(path, "content differs from the SHA-256 recorded in meta.json")
    if vocab_size is not None and largest >= vocab_size:
        raise CacheError(path, f"holds id {largest}, past the vocabulary of {vocab_size} ids")
    return tokens
