"""Byte-level BPE tokenizer (HF ``tokenizers``): train, save, load.

Byte-level means every string is encodable (no unknown token) and decoding round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOT = "<|endoftext|>"
PAD = "<|pad|>"
TOKENIZER_FILE = "tokenizer.json"


def _capped(texts: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    seen = 0
    for t in texts:
        if max_bytes is not None and seen >= max_bytes:
            return
        seen += len(t.encode("utf-8", "replace"))
        yield t


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    *,
    max_bytes: int | None = None,
    add_pad: bool = False,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a byte-level BPE with ``<|endoftext|>`` (id 0) and optionally ``<|pad|>`` (id 1).

    ``max_bytes`` caps how much text is used (a few MB train in seconds).
    """
    special = [EOT] + ([PAD] if add_pad else [])
    if vocab_size < 256 + len(special):
        raise ValueError(
            f"vocab_size must be at least {256 + len(special)} for a byte-level BPE (got {vocab_size})"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_capped(texts, max_bytes), trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` (a file, or a directory containing one)."""
    p = Path(path)
    if p.is_dir():
        p = p / TOKENIZER_FILE
    if not p.exists():
        raise FileNotFoundError(
            f"tokenizer file not found: {p} (data.tokenizer_path must point to a tokenizer.json, e.g. "
            "one saved by a previous run or downloaded from the Hugging Face Hub)"
        )
    return Tokenizer.from_file(str(p))


def save_tokenizer(tok: Tokenizer, path: str | Path) -> Path:
    """Save atomically (write + rename) so concurrent readers never see a partial file."""
    p = Path(path)
    if p.suffix != ".json":
        p = p / TOKENIZER_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tok.save(str(tmp))
    tmp.replace(p)
    return p


def eot_id(tok: Tokenizer) -> int:
    i = tok.token_to_id(EOT)
    if i is None:
        raise ValueError(f"tokenizer has no {EOT!r} token; nextok separates documents with it")
    return i


def pad_id(tok: Tokenizer) -> int | None:
    return tok.token_to_id(PAD)
