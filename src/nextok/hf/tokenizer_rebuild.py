"""Where ``transformers`` rebuilds a tokenizer instead of running ``tokenizer.json`` as written.

For most folders ``AutoTokenizer`` runs ``tokenizer.json``. Two classes keep only its vocabulary
and merges and bring their own normaliser, pre-tokenizer and model flags: ``Qwen2Tokenizer``
(always for ``model_type: qwen2``, whatever ``tokenizer_class`` says; for any folder that
declares it) and ``LlamaTokenizer`` (declared by Llama-2-style hub folders whose tokenizer is not
byte-level). nextok's contract is ``tokenizer.json`` as written: for a SentencePiece-derived
file that is what SentencePiece, hence the model's training, computes.

Export: a folder may use ``qwen2`` only when the tokenizer already is Qwen2's pipeline (else
users would get other ids than training used). Import: when the class transformers would build
encodes a probe text differently, nextok says so in one line.
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
            {
                "type": "ByteLevel",
                "add_prefix_space": False,
                "trim_offsets": True,
                "use_regex": False,
            },
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
# LlamaTokenizer (transformers 5, legacy=False): no normaliser, Metaspace "first", byte fallback
_LLAMA_PIPELINE = {
    "normalizer": None,
    "pre_tokenizer": {
        "type": "Metaspace",
        "replacement": "\u2581",
        "prepend_scheme": "first",
        "split": False,
    },
    "model": {"type": "BPE", "dropout": None, "fuse_unk": True, "byte_fallback": True},
}
PIPELINES = {"Qwen2Tokenizer": _QWEN2_PIPELINE, "LlamaTokenizer": _LLAMA_PIPELINE}
REBUILT = {"qwen2": ("Qwen2Tokenizer", _QWEN2_PIPELINE)}  # by model_type, whatever is declared
# texts on which the rebuilt pipelines are known to differ (leading/lone spaces, newlines, NFC)
PROBES = (
    "Hello world",
    "  two leading spaces",
    " ",
    "def f(x):\n    return x\n",
    "\n\nline",
    "a  b\t\tc",
    "Cafe\u0301 na\u00efve \u2014 \u6771\u4eac",
)


def _pipeline(d: dict) -> dict:
    """The parts of tokenizer JSON ``d`` a rebuilding class replaces, in comparable form
    (offsets trimming and empty-vs-null affixes do not change ids)."""
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
    got, want = _pipeline(json.loads(tok.to_str())), _pipeline(want)
    diff = [k for k in want if got[k] != want[k]]
    if not diff:
        return None
    return (
        f"needs a tokenizer {cls} rebuilds exactly: transformers loads a {model_type} folder's "
        f"tokenizer as {cls}, which would replace this tokenizer's {' and '.join(diff)} "
        "(other ids than in training)"
    )


def rebuilt(tok: Tokenizer, cls: str) -> Tokenizer:
    """``tok`` as transformers' ``cls`` rebuilds it: its vocabulary, merges and added tokens
    with the class's normaliser, pre-tokenizer and model flags."""
    want = PIPELINES[cls]
    d = json.loads(tok.to_str())
    d["normalizer"], d["pre_tokenizer"] = want["normalizer"], want["pre_tokenizer"]
    d["model"].update({k: v for k, v in want["model"].items() if k != "type"})
    return Tokenizer.from_str(json.dumps(d))


def class_built(model_type: str, tokenizer_config: dict, tok: Tokenizer) -> str | None:
    """The rebuilding class ``AutoTokenizer`` uses for a folder (None: it runs tokenizer.json)."""
    if model_type in REBUILT:
        return REBUILT[model_type][0]
    declared = str(tokenizer_config.get("tokenizer_class") or "").removesuffix("Fast")
    if declared == "LlamaTokenizer" and "ByteLevel" in json.dumps(
        json.loads(tok.to_str()).get("pre_tokenizer")
    ):
        return None  # Llama-3-style folders: transformers runs tokenizer.json
    return declared if declared in PIPELINES else None


def probe_differs(tok: Tokenizer, cls: str) -> str | None:
    """The first probe text ``cls``'s rebuild encodes to other ids than ``tok`` (None: none)."""
    other = rebuilt(tok, cls)
    for text in PROBES:
        if tok.encode(text).ids != other.encode(text).ids:
            return text
    return None
