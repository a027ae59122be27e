"""Byte-level BPE tokenizer (HF ``tokenizers``): train, save, load; special tokens of any HF
tokenizer (``tokenizer_config.json``).

Byte-level means every string is encodable (no unknown token) and decoding round-trips exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from nextok.io import atomic_write_text
from nextok.special_tokens import EOT, PAD

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


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
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder, not a tokenizer.json file")
    raw = p.read_bytes()
    try:
        return Tokenizer.from_str(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        why = f"not UTF-8 text: byte {e.start:,} of {len(raw):,} is {raw[e.start : e.start + 1]!r}"
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ValueError(f"{p} is not a valid tokenizer.json ({why})")


def save_tokenizer(tok: Tokenizer, path: str | Path) -> Path:
    """Save atomically so concurrent readers (ranks waiting for it) never see a partial file.

    ``path``: a ``.json`` file or a folder (gets ``tokenizer.json``); the bytes are exactly
    ``Tokenizer.save``'s (pretty JSON)."""
    p = Path(path)
    if p.suffix != ".json":
        p = p / TOKENIZER_FILE
    return atomic_write_text(p, tok.to_str(pretty=True))


# ---------------------------------------------------------------------- special tokens
@dataclass(frozen=True)
class SpecialTokens:
    """What the data pipeline, generation and export need to know about a tokenizer.

    ``eos`` separates documents in training and ends generation; ``bos`` is prepended to every
    document (and prompt) when ``add_bos``; ``pad`` is what exports declare for padding (the
    tokenizer's own pad token, else the EOS).
    """

    eos: str
    bos: str | None = None
    add_bos: bool = False
    pad: str | None = None

    def eos_id(self, tok: Tokenizer) -> int:
        return _token_id(tok, self.eos, "eos")

    def bos_id(self, tok: Tokenizer) -> int | None:
        return _token_id(tok, self.bos, "bos") if self.add_bos else None

    def doc_start_id(self, tok: Tokenizer) -> int:
        """The token that opens a document in packed blocks (``[bos] doc <eos> [bos] doc ...``):
        the BOS when prepended, else the EOS that ends the previous document."""
        bos = self.bos_id(tok)
        return self.eos_id(tok) if bos is None else bos

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpecialTokens:
        return cls(**d)


def _token_id(tok: Tokenizer, token: str | None, what: str) -> int:
    i = tok.token_to_id(token) if token is not None else None
    if i is None:
        raise ValueError(f"the tokenizer has no {what} token {token!r}")
    return i


def _content(value: Any) -> str | None:
    """A token in tokenizer_config.json: a string or an AddedToken dict with ``content``."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def tokenizer_config_path(path: str | Path) -> Path:
    """``tokenizer_config.json`` of a tokenizer folder, or next to a ``tokenizer.json`` file."""
    p = Path(path)
    return (p if p.is_dir() else p.parent) / TOKENIZER_CONFIG_FILE


def load_tokenizer_config(path: str | Path) -> dict[str, Any]:
    """The folder's ``tokenizer_config.json`` (+ ``special_tokens_map.json``), or ``{}``."""
    out: dict[str, Any] = {}
    folder = tokenizer_config_path(path).parent
    for name in (SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE):  # the config wins
        f = folder / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}: not valid JSON ({e})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{f}: expected a JSON object")
            out.update(data)
    return out


def _prepended(tok: Tokenizer) -> int | None:
    """The token id the tokenizer's own post-processor prepends (e.g. Llama 3's BOS), or None."""
    with_special = tok.encode("a", add_special_tokens=True).ids
    plain = tok.encode("a", add_special_tokens=False).ids
    return (
        with_special[0]
        if len(with_special) > len(plain) and with_special[:1] != plain[:1]
        else None
    )


def special_tokens(
    tok: Tokenizer,
    config: dict[str, Any] | None = None,
    *,
    eos: str | None = None,
    add_bos: bool | None = None,
    where: str = "tokenizer",
) -> SpecialTokens:
    """Resolve the special tokens: explicit ``eos``/``add_bos`` > ``tokenizer_config.json`` >
    the tokenizer's post-processor > nextok's convention (``<|endoftext|>``, no BOS).

    Every token named must exist in the vocabulary; an error says which field is wrong.
    """
    config = config or {}
    if not tok.encode("a", add_special_tokens=False).ids:
        raise ValueError(
            f"{where}: its tokenizer encodes 'a' to no token (no unknown token, no byte fallback), "
            "so text it cannot encode would be dropped silently; use a tokenizer that encodes "
            "every text"
        )
    eos_tok = eos or _content(config.get("eos_token"))
    if eos_tok is None:
        if tok.token_to_id(EOT) is None:
            raise ValueError(
                f"{where}: no EOS token: its tokenizer_config.json names no eos_token and it has "
                f"no {EOT}; set data.eos_token='TOKEN' to the token that ends a document (quoted)"
            )
        eos_tok = EOT
    if tok.token_to_id(eos_tok) is None:
        src = "data.eos_token" if eos else "tokenizer_config.json eos_token"
        raise ValueError(f"{where}: {src}={eos_tok!r} is not in the tokenizer's vocabulary")
    bos_tok = _content(config.get("bos_token"))
    if bos_tok is not None and tok.token_to_id(bos_tok) is None:
        raise ValueError(
            f"{where}: tokenizer_config.json bos_token={bos_tok!r} is not in the vocabulary"
        )
    if add_bos is None:
        add_bos = _add_bos_from_files(tok, config, bos_tok, where)
    if add_bos and bos_tok is None:
        raise ValueError(
            f"{where}: BOS requested (add_bos) but tokenizer_config.json names no bos_token"
        )
    pad_tok = _content(config.get("pad_token"))
    if pad_tok is not None and tok.token_to_id(pad_tok) is None:
        raise ValueError(
            f"{where}: tokenizer_config.json pad_token={pad_tok!r} is not in the vocabulary"
        )
    if pad_tok is None and tok.token_to_id(PAD) is not None:
        pad_tok = PAD
    if pad_tok is None:  # the usual choice for decoder-only models: padding is masked out anyway
        pad_tok = eos_tok
    return SpecialTokens(eos=eos_tok, bos=bos_tok, add_bos=bool(add_bos), pad=pad_tok)


def _add_bos_from_files(
    tok: Tokenizer, config: dict[str, Any], bos_tok: str | None, where: str
) -> bool:
    """Whether documents start with BOS, when ``tokenizer_config.json`` (``add_bos_token``,
    ``bos_token``) and ``tokenizer.json``'s post-processor (what transformers runs) agree;
    a one-line error naming both files when they do not."""
    said = config.get("add_bos_token")
    first = _prepended(tok)
    adds = tok.id_to_token(first) if first is not None else None
    if adds is not None and (said is False or bos_tok != adds):
        cfg = f"add_bos_token={said}" if said is False else f"bos_token={bos_tok!r}"
        raise ValueError(
            f"{where}: tokenizer_config.json says {cfg} but tokenizer.json's post-processor "
            f"prepends {adds!r}; set data.add_bos=true or false to choose"
        )
    if adds is None and said:
        raise ValueError(
            f"{where}: tokenizer_config.json says add_bos_token=true but tokenizer.json's "
            "post-processor prepends no BOS; set data.add_bos=true or false to choose"
        )
    return adds is not None


def encodes_as_trained(tok: Tokenizer, special: SpecialTokens) -> Tokenizer:
    """A copy whose post-processor (what transformers runs) prepends BOS exactly when training
    did, so the files written with ``hf_tokenizer_config(special)`` agree with each other."""
    tok = Tokenizer.from_str(tok.to_str())
    bos_id = special.bos_id(tok)
    first = _prepended(tok)
    if bos_id is not None and first != bos_id:
        tok.post_processor = processors.Sequence(
            [p for p in [tok.post_processor] if p is not None and first is None]
            + [
                processors.TemplateProcessing(
                    single=f"{special.bos} $A",
                    pair=f"{special.bos} $A $B",
                    special_tokens=[(special.bos, bos_id)],
                )
            ]
        )
    elif bos_id is None and first is not None:
        # it would add a token the model was not trained with (e.g. data.add_bos=false on a
        # Llama 3 tokenizer): drop the template
        tok.post_processor = None
    return tok


def hf_tokenizer_config(special: SpecialTokens, model_max_length: int | None = None) -> dict:
    """``tokenizer_config.json`` for ``PreTrainedTokenizerFast``: the same special tokens back.

    Without a pad token of its own, ``pad_token`` = the EOS token (the usual choice for
    decoder-only models; padding positions are masked out anyway).
    """
    out: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if special.bos is not None:
        out["bos_token"] = special.bos
    out["eos_token"] = special.eos
    out["pad_token"] = special.pad or special.eos
    out["add_bos_token"] = special.add_bos
    out["add_eos_token"] = False
    if model_max_length is not None:
        out["model_max_length"] = model_max_length
    return out
