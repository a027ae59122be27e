"""``TokenSplits``: a source's train and validation token ids under one encoder.

Encoded in memory, or once into the on-disk cache (:mod:`nextok.data.cache`, keyed by
:mod:`nextok.data.cache_key`) and memory-mapped from there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from nextok.data import cache
from nextok.data.cache_key import cache_key
from nextok.data.sources.base import DocumentSource
from nextok.data.tokenization.encoder import TokenEncoder

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


class TokenSplits:
    """The ``train``/``val`` ids of ``source`` encoded by ``encoder``, each at least one block."""

    def __init__(
        self,
        source: DocumentSource,
        encoder: TokenEncoder,
        block_size: int,
        cache_dir: str | None = None,
        cache_shard_tokens: int = 100_000_000,
    ) -> None:
        self.source, self.encoder, self.block_size = source, encoder, block_size
        self.cache_dir, self.cache_shard_tokens = cache_dir, cache_shard_tokens

    def key(self) -> str:
        """The cache folder name for this source's settings and the encoder."""
        return cache_key(**self.source.key_parts(), **self.encoder.key_parts())

    def _encode(self, which: str):
        train, val = self.source.documents()
        return self.encoder.encode(train if which == "train" else val, self.source.text_column)

    def ensure_cache(self) -> Path:
        """Tokenize both splits into ``cache_dir`` unless that cache exists; its folder."""
        key = self.key()
        for p in cache.remove_stale_temp_dirs(self.cache_dir):
            log.info("removed %s (the temp dir of a cache build that was killed)", p)
        if not cache.cache_exists(self.cache_dir, key):
            src = self.source
            d = cache.build_cache(
                self.cache_dir,
                key,
                {which: self._encode(which) for which in SPLITS},
                self.encoder.dtype,
                shard_tokens=self.cache_shard_tokens,
                info={"source": src.kind, "path": src.path, "name": src.name},
            )
            log.info("tokenized cache written to %s", d)
        return Path(self.cache_dir).expanduser() / key

    def load(self, which: str) -> np.ndarray | cache.ShardedTokens:
        """All ids of the ``train`` or ``val`` split; an error when not one block's worth."""
        if self.cache_dir:
            key = self.ensure_cache().name
            tokens = cache.open_split(self.cache_dir, key, which, self.encoder.vocab_size)
        else:
            chunks = list(self._encode(which))
            tokens = np.concatenate(chunks) if chunks else np.empty(0, dtype=self.encoder.dtype)
        if len(tokens) < self.block_size + 1:
            raise ValueError(
                f"the {which} split has {len(tokens)} tokens, fewer than one block of block_size+1="
                f"{self.block_size + 1}; use more data or a smaller block_size"
            )
        return tokens
