"""``TokenEncoder``: a tokenizer with a run's document separator and BOS, as one value.

Everything that turns documents into ids (the token splits, the cache key, the streams) takes
this instead of a data module: the ids depend on exactly these four things.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from nextok.data.packing import encode_stream, token_dtype
from nextok.data.sources.split import Documents, iter_texts


@dataclass(frozen=True)
class TokenEncoder:
    """Documents -> chunks of ids, each document followed by ``eos_id`` (and led by ``bos_id``)."""

    tokenizer: Tokenizer
    eos_id: int
    bos_id: int | None = None
    batch_docs: int = 256  # documents per ``encode_batch`` call

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(self.vocab_size)

    def encode(self, docs: Documents, text_column: str) -> Iterator[np.ndarray]:
        texts = iter_texts(docs, text_column, self.batch_docs)
        return encode_stream(self.tokenizer, texts, self.eos_id, self.dtype, self.bos_id)

    def key_parts(self) -> dict[str, Any]:
        """What decides the ids besides the documents (part of the token cache key)."""
        return {
            "tokenizer_json": self.tokenizer.to_str(),
            "eos_id": self.eos_id,
            "bos_id": self.bos_id,
        }
