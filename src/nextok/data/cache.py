"""Pre-tokenized cache: a split tokenized once into sharded ``uint16``/``uint32`` memmaps.

Like nanoGPT's ``train.bin``, but sharded (``train_00000.bin``, ...) and keyed by a hash of the
dataset config and the tokenizer, so a changed tokenizer or dataset never reads stale ids.
Layout: ``<cache_dir>/<key>/{meta.json, train_00000.bin, ..., val_00000.bin}``. The directory is
written under a temporary name and renamed, so readers never see a half-written cache; the temp
name ``.<key>.tmp-<host>-<pid>-<hex>`` names its owner, so the leftovers of a killed process are
removed at the next start (:func:`remove_stale_temp_dirs`) and a running writer's never are.
``meta.json`` records each shard's token count and SHA-256; opening a split checks them
(:mod:`nextok.data.cache_check`), so a damaged cache is refused rather than read.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nextok.data.cache_check import META, read_meta, verified_shard
from nextok.owner import owner_gone, owner_tag

_TEMP_DIR = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}$")


class ShardedTokens:
    """Read-only 1-D view over several memmapped shards; ``tokens[a:b]`` may span shards."""

    def __init__(self, shards: list[np.ndarray]) -> None:
        self.shards = [s for s in shards if len(s)]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.dtype = self.shards[0].dtype if self.shards else np.dtype(np.uint16)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("ShardedTokens supports contiguous slices only")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.empty(0, dtype=self.dtype)
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts = []
        while start < stop:
            lo = start - self.offsets[i]
            hi = min(stop, self.offsets[i + 1]) - self.offsets[i]
            parts.append(self.shards[i][lo:hi])
            start = self.offsets[i] + hi
            i += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[0 : len(self)]
        return out.astype(dtype) if dtype is not None else out


def write_split(
    directory: Path, split: str, chunks: Iterable[np.ndarray], dtype: np.dtype, shard_tokens: int
) -> tuple[list[int], list[str]]:
    """Stream token chunks into ``<split>_NNNNN.bin`` files of at most ``shard_tokens`` ids;
    return each shard's token count and SHA-256 (hashed as written: no second read)."""
    sizes: list[int] = []
    digests: list = []
    f = None
    n_in_shard = 0
    try:
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=dtype)
            while chunk.size:
                if f is None:
                    f = open(directory / f"{split}_{len(sizes):05d}.bin", "wb")  # noqa: SIM115
                    sizes.append(0)
                    digests.append(hashlib.sha256())
                    n_in_shard = 0
                take = min(chunk.size, shard_tokens - n_in_shard)
                part = np.ascontiguousarray(chunk[:take])
                part.tofile(f)
                digests[-1].update(memoryview(part).cast("B"))
                n_in_shard += take
                sizes[-1] += take
                chunk = chunk[take:]
                if n_in_shard == shard_tokens:
                    f.close()
                    f = None
    finally:
        if f is not None:
            f.close()
    return sizes, [d.hexdigest() for d in digests]


def build_cache(
    root: str | Path,
    key: str,
    splits: dict[str, Iterable[np.ndarray]],
    dtype: np.dtype,
    *,
    shard_tokens: int = 100_000_000,
    info: dict | None = None,
) -> Path:
    """Tokenize-once: write every split's chunks, then atomically publish ``<root>/<key>``."""
    final = Path(root).expanduser() / key
    if (final / META).exists():
        return final
    tmp = final.with_name(f".{key}.tmp-{owner_tag()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        meta = {"dtype": np.dtype(dtype).name, "splits": {}, "sha256": {}, "info": info or {}}
        for split, chunks in splits.items():
            sizes, digests = write_split(tmp, split, chunks, np.dtype(dtype), shard_tokens)
            meta["splits"][split], meta["sha256"][split] = sizes, digests
        (tmp / META).write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(final)
        except OSError:  # another process published it first
            if not (final / META).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def remove_stale_temp_dirs(root: str | Path) -> list[Path]:
    """Delete the temp dirs of cache builds whose process is gone (killed mid-build)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    stale = []
    for p in root.iterdir():
        m = _TEMP_DIR.match(p.name)
        if m and p.is_dir() and owner_gone(m["host"], int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)
            stale.append(p)
    return stale


def cache_exists(root: str | Path, key: str) -> bool:
    return (Path(root).expanduser() / key / META).exists()


def open_split(
    root: str | Path, key: str, split: str, vocab_size: int | None = None
) -> ShardedTokens:
    """Memory-map one split of a cache after checking every shard's size, SHA-256 and (given
    ``vocab_size``) largest id: one pass over the split's bytes per open."""
    d = Path(root).expanduser() / key
    meta = read_meta(d)
    if split not in meta.splits:
        raise KeyError(f"cache {d} has no split {split!r} (has {sorted(meta.splits)})")
    shards = [
        verified_shard(d, f"{split}_{i:05d}.bin", meta.dtype, n, digest, vocab_size)
        for i, (n, digest) in enumerate(meta.shards(split))
        if n
    ]
    return ShardedTokens(shards)
