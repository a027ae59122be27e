"""Sample prompts from the corpus itself: the first few tokens of held-out documents.

The beginnings of validation documents are in-domain for every corpus (a fixed prompt such as
``def `` suits only Python) and are never trained on.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer


def document_openings(texts: Iterable[str], tokenizer: Tokenizer, n: int, tokens: int) -> list[str]:
    """The first ``tokens`` tokens (as text) of the first ``n`` non-blank documents.

    Leading whitespace is skipped; a cut that would end inside a UTF-8 character is moved back
    to the previous whole character, so a prompt never ends in U+FFFD."""
    out: list[str] = []
    for text in texts:
        text = (text or "").lstrip()
        if not text:
            continue
        ids = tokenizer.encode(text).ids[:tokens]
        while ids and "\ufffd" in tokenizer.decode(ids) and "\ufffd" not in text:
            ids = ids[:-1]
        if ids:
            out.append(tokenizer.decode(ids))
        if len(out) == n:
            break
    return out


def held_out_prompts(datamodule, tokenizer: Tokenizer, n: int = 3, tokens: int = 8) -> list[str]:
    """Openings of the first ``n`` validation documents of an ``LMDataModule`` ([] if it has none)."""
    from nextok.data.sources import iter_texts

    docs = getattr(datamodule, "documents", None)
    if docs is None:
        return []
    _, val = docs()
    texts = (t for batch in iter_texts(val, datamodule.corpus.text_column, 16) for t in batch)
    return document_openings(texts, tokenizer, n, tokens)
