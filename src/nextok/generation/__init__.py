"""Autoregressive generation from a :class:`~nextok.model.Transformer`.

- :mod:`~nextok.generation.sampling`: :class:`SamplingParams` and the rules that pick the next
  token (repetition penalty, temperature, top-k, top-p, min-p, seeded draws).
- :mod:`~nextok.generation.loop`: the KV-cached prefill + decode loop (:func:`stream`,
  :func:`generate`) over batches of token-id prompts.
- :mod:`~nextok.generation.text`: text prompts in, printable text out (:func:`generate_text`).
- :mod:`~nextok.generation.quantize`: weight-only int8/int4 quantization through torchao
  (:func:`quantize_model`), a transform applied after loading.
- :mod:`~nextok.generation.proposers` / :mod:`~nextok.generation.speculative`: speculative
  decoding (``stream(..., proposer=DraftModel(draft, 4))`` or ``PromptLookup(4, 3)``): a
  proposer guesses tokens, :func:`verify` accepts a prefix by the rejection rule.
"""

from nextok.generation.loop import check_fits, compile_decode_step, generate, stream
from nextok.generation.proposers import DraftModel, PromptLookup, Proposal, Proposer
from nextok.generation.quantize import QUANTIZE_MODES, quantize_model
from nextok.generation.sampling import (
    GeneratorArg,
    SamplingParams,
    apply_repetition_penalty,
    make_generator,
    min_p_filter,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from nextok.generation.speculative import verify
from nextok.generation.text import EOT, TextStream, encode_prompt, generate_text

__all__ = [
    "EOT",
    "DraftModel",
    "PromptLookup",
    "Proposal",
    "Proposer",
    "QUANTIZE_MODES",
    "GeneratorArg",
    "SamplingParams",
    "TextStream",
    "apply_repetition_penalty",
    "check_fits",
    "compile_decode_step",
    "encode_prompt",
    "generate",
    "generate_text",
    "make_generator",
    "min_p_filter",
    "quantize_model",
    "sample_next",
    "stream",
    "top_k_filter",
    "top_p_filter",
    "verify",
]
