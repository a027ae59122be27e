"""Text in, text out: prompt encoding, printable streaming deltas and stop strings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nextok.generation.loop import generate
from nextok.generation.sampling import SamplingParams
from nextok.special_tokens import EOT

if TYPE_CHECKING:  # tokenizers is only needed for type hints here
    from tokenizers import Tokenizer

    from nextok.model import Transformer


class TextStream:
    """Turns one row's growing token list into text deltas that are safe to print.

    Holds back an incomplete UTF-8 character (decoded as U+FFFD) and any tail that could still
    become a stop string, and cuts the text at the first stop string.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def _safe_end(self, text: str) -> int:
        end = len(text)
        while end and text[end - 1] == "\ufffd":
            end -= 1
        hold = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, end), hold, -1):
                if text[end - n : end] == s[:n]:
                    hold = n
                    break
        return end - hold

    def push(self, ids: list[int]) -> str:
        """Update with all ids generated so far; return the new printable text."""
        text = self.tokenizer.decode(ids)
        cut = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if cut:
            text, self.stopped = text[: min(cut)], True
            end = len(text)
        else:
            end = self._safe_end(text)
        self.text = text
        delta, self.emitted = text[self.emitted : end], max(self.emitted, end)
        return delta

    def flush(self) -> str:
        """The held-back rest, once the row is finished."""
        delta, self.emitted = self.text[self.emitted :], len(self.text)
        return delta


def encode_prompt(
    tokenizer: Tokenizer, prompt: str, eos: str | None = EOT, bos: str | None = None
) -> list[int]:
    """Token ids of ``prompt``, after ``bos`` when given (models trained with a BOS before every
    document); an empty prompt without BOS starts from ``eos`` (the separator the model saw
    before every document in training)."""
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    bos_id = tokenizer.token_to_id(bos) if bos else None
    if bos_id is not None:
        return [bos_id, *ids]
    if ids:
        return ids
    start = eos or EOT
    eot = tokenizer.token_to_id(start)
    if eot is None:
        raise ValueError(f"prompt {prompt!r} encodes to no tokens and the tokenizer has no {start}")
    return [eot]


def generate_text(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    sampling: SamplingParams | None = None,
    *,
    stop: Sequence[str] = (),
    eos: str | None = EOT,
    bos: str | None = None,
    on_text: Callable[[int, str], None] | None = None,
    **kwargs,
) -> list[str]:
    """Generate continuations of text prompts; returns the new text of each (prompt excluded).

    ``eos`` (default ``<|endoftext|>``; pass the tokenizer's EOS, e.g. ``SpecialTokens.eos``) ends
    a row when the tokenizer knows that token; ``bos`` is put before every prompt. Text is
    cut before the first of the ``stop`` strings. ``sampling``: the sampling rules (see
    :class:`~nextok.generation.SamplingParams`). ``on_text(row, delta)`` streams printable text
    as it is produced. Other keyword arguments go to :func:`stream`.
    """
    eos_id = tokenizer.token_to_id(eos) if eos else None
    ids = [encode_prompt(tokenizer, p, eos, bos) for p in prompts]
    streams = [TextStream(tokenizer, stop) for _ in prompts]

    def on_row(b: int, row_ids: list[int]) -> bool:
        delta = streams[b].push(row_ids)
        if delta and on_text is not None:
            on_text(b, delta)
        return streams[b].stopped

    kwargs.setdefault("vocab_limit", tokenizer.get_vocab_size())
    generate(model, ids, max_new_tokens, sampling, eos_id=eos_id, stop_fn=on_row, **kwargs)
    for b, s in enumerate(streams):
        delta = s.flush()
        if delta and on_text is not None:
            on_text(b, delta)
    return [s.text for s in streams]
