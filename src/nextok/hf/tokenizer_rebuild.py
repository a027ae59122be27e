"""Model types whose tokenizer ``transformers`` rebuilds instead of reading ``tokenizer.json``.

For most model types ``AutoTokenizer`` honours the exported ``tokenizer_class``
(``PreTrainedTokenizerFast``) and runs ``tokenizer.json`` as written. For ``qwen2`` it ignores
that field and builds ``Qwen2Tokenizer``, which keeps only the vocabulary and merges and brings
its own normaliser (NFC) and pre-tokenizer (Qwen's split regex + byte-level). A folder may use
such a model_type only when the tokenizer already is that pipeline; otherwise users would get
other ids than the model was trained with.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer

# Qwen2Tokenizer (transformers 5) builds exactly this normaliser and pre-tokenizer.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PIPELINE = {
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": _QWEN2_SPLIT},
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
        ],
    },
    "model": {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": "",
        "end_of_word_suffix": "",
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
    },
}
REBUILT = {"qwen2": ("Qwen2Tokenizer", _QWEN2_PIPELINE)}


def _pipeline(tok: Tokenizer) -> dict:
    """The parts of ``tok`` a rebuilding class replaces, in comparable form (offsets trimming
    and empty-vs-null affixes do not change ids)."""
    d = json.loads(tok.to_str())
    pre = json.loads(json.dumps(d.get("pre_tokenizer")))
    for p in (pre or {}).get("pretokenizers", []):
        p.pop("trim_offsets", None)
    model = {k: v for k, v in (d.get("model") or {}).items() if k not in ("vocab", "merges")}
    for k in ("continuing_subword_prefix", "end_of_word_suffix"):
        model[k] = model.get(k) or ""
    model.setdefault("ignore_merges", False)
    return {"normalizer": d.get("normalizer"), "pre_tokenizer": pre, "model": model}


def rebuilt_differs(model_type: str, tok: Tokenizer) -> str | None:
    """Why ``AutoTokenizer`` would tokenize differently from ``tok`` in a ``model_type`` folder
    (None: it runs ``tok`` as is, or rebuilds exactly this pipeline)."""
    if model_type not in REBUILT:
        return None
    cls, want = REBUILT[model_type]
    got = _pipeline(tok)
    diff = [k for k in want if got[k] != want[k]]
    if not diff:
        return None
    return (
        f"needs a tokenizer {cls} rebuilds exactly: transformers loads a {model_type} folder's "
        f"tokenizer as {cls}, which would replace this tokenizer's {' and '.join(diff)} "
        "(other ids than in training)"
    )
