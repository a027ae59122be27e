"""``nextok-generate draft=...``: the proposer for speculative decoding, from the config keys
``draft`` (a checkpoint / Hugging Face folder, or ``prompt_lookup``), ``num_speculative_tokens``,
``draft_confidence_threshold`` and ``prompt_lookup_max_ngram``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from nextok.cli.errors import CliError

PROMPT_LOOKUP = "prompt_lookup"


def make_proposer(cfg: DictConfig, loaded: Any, device: Any, dtype: Any, quantize: str | None):
    """None without ``draft``; else a :class:`~nextok.generation.PromptLookup` or a
    :class:`~nextok.generation.DraftModel` whose tokenizer matches the target's (refused in
    one line naming the difference). The draft gets the target's device, dtype and quantization."""
    from nextok.checkpoint import load_checkpoint
    from nextok.generation import DraftModel, PromptLookup, quantize_model
    from nextok.generation.same_tokenizer import tokenizer_difference

    draft = cfg.get("draft")
    if draft is None or str(draft) == "":
        return None
    k = cfg.get("num_speculative_tokens", 4)
    threshold = cfg.get("draft_confidence_threshold", 0.4)
    try:
        if str(draft) == PROMPT_LOOKUP:
            return PromptLookup(k, cfg.get("prompt_lookup_max_ngram", 3))
        DraftModel(loaded.model, k, threshold)  # checks the keys before the draft is loaded
    except ValueError as err:
        raise CliError(str(err)) from err
    try:
        other = load_checkpoint(
            draft, device=device, dtype=dtype, verify=bool(cfg.get("verify", True))
        )
    except (FileNotFoundError, IsADirectoryError, ValueError) as err:
        raise CliError(f"draft={draft}: {err}") from err
    except Exception as err:  # e.g. not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"draft={draft}: cannot load it: {first}") from err
    differs = tokenizer_difference(
        loaded.tokenizer, other.tokenizer, loaded.special.eos, other.special.eos
    )
    if differs:
        raise CliError(f"draft={draft} has another tokenizer than ckpt={cfg.ckpt}: {differs}")
    try:
        quantize_model(other.model, quantize, device)
    except ValueError as err:
        raise CliError(f"draft={draft}: {err}") from err
    return DraftModel(other.model, k, threshold)


def acceptance_note(draft: str, proposer: Any) -> str:
    """``draft=...: accepted A of P proposed tokens (R%)``, the speculative summary line."""
    p, a = proposer.stats["proposed"], proposer.stats["accepted"]
    rate = f"{100 * a / p:.1f}%" if p else "n/a"
    return f"draft={draft}: accepted {a} of {p} proposed tokens ({rate})"
