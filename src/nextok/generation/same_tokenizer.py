"""Does a draft model speak the target's tokens? The first difference, in words, or None.

Speculative decoding exchanges token ids between two models, so both must map every id to the
same token and end documents with the same token; anything else would make the draft's guesses
mean other text (harmless to exactness, fatal to speed, and a sign the wrong model was given).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def tokenizer_difference(
    target: Tokenizer,
    draft: Tokenizer,
    target_eos: str | None = None,
    draft_eos: str | None = None,
) -> str | None:
    """What differs between the two tokenizers (vocabulary size, an id's token, the EOS)."""
    a, b = target.get_vocab(with_added_tokens=True), draft.get_vocab(with_added_tokens=True)
    if len(a) != len(b):
        return f"its vocabulary has {len(b)} tokens, the target's {len(a)}"
    by_id_a = {i: t for t, i in a.items()}
    by_id_b = {i: t for t, i in b.items()}
    for i in sorted(by_id_a):
        if by_id_a[i] != by_id_b.get(i):
            return f"token id {i} is {by_id_b.get(i)!r} in it, {by_id_a[i]!r} in the target"
    if target_eos != draft_eos:
        return f"its end-of-document token is {draft_eos!r}, the target's {target_eos!r}"
    return None
