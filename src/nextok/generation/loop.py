"""The KV-cached generation loop: ``prefill`` then ``decode``, one token per row per step.

``prefill`` runs the whole, left-padded prompt batch in one forward pass, filling a
:class:`~nextok.model.KVCache`; ``decode`` then feeds one token per row per step, attending to the
cache. Each step's logits go through the rules of :mod:`nextok.generation.sampling`.

**Context limit (chosen behaviour: a clear error).** A row may never hold more than
``model.config.block_size`` tokens (prompt + new tokens). :func:`stream` checks this *before*
doing any work and raises ``ValueError`` saying how many new tokens fit. We chose an error over a
sliding window because a model only ever saw ``block_size`` positions in training (learned
position tables end there, RoPE was never trained beyond it), because a window would make a row's
result depend on the other rows in its batch (the batch slides when its longest row is full), and
because it keeps "cached == uncached == one-by-one" exact.

Batched prompts of different lengths are left padded; the model's ``attention_mask`` hides the
padding and makes positions count real tokens only, so every row equals the same prompt
generated alone (greedy: token for token; sampling: also, when each row has its own seeded
``torch.Generator``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from nextok.generation.sampling import GeneratorArg, SamplingParams, sample_next

if TYPE_CHECKING:
    from nextok.generation.proposers import Proposer
    from nextok.model import Transformer


def compile_decode_step(model: Transformer, **compile_kwargs) -> Callable:
    """``torch.compile`` the model for the one-token decode steps (the prefill stays eager).

    ``dynamic=True`` keeps one graph for every cache length instead of recompiling per step.
    A quantization whose inductor-compiled step is known to be wrong is refused
    (:func:`~nextok.generation.quantize.check_compile`).
    """
    from nextok.generation.quantize import check_compile

    inductor = compile_kwargs.get("backend", "inductor") == "inductor"
    check_compile(getattr(model, "quantize_mode", None), inductor)
    compile_kwargs.setdefault("dynamic", True)
    return torch.compile(model, **compile_kwargs)


def check_fits(model: Transformer, prompt_len: int, max_new_tokens: int) -> None:
    """Raise ``ValueError`` when prompt + new tokens would exceed ``block_size``."""
    block = model.config.block_size
    if prompt_len >= block:
        raise ValueError(
            f"prompt of {prompt_len} tokens leaves no room to generate: model.block_size is {block};"
            " shorten the prompt"
        )
    if prompt_len + max_new_tokens > block:
        raise ValueError(
            f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds "
            f"model.block_size={block}; set max_new_tokens <= {block - prompt_len} "
            "or shorten the prompt"
        )


def ends_with(seq: list[int], tails: Sequence[Sequence[int]]) -> bool:
    """True when ``seq`` ends with one of the (non-empty) id sequences ``tails``."""
    return any(len(t) and len(seq) >= len(t) and seq[-len(t) :] == list(t) for t in tails)


@torch.inference_mode()
def stream(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: SamplingParams | None = None,
    *,
    eos_id: int | None = None,
    stop: Sequence[Sequence[int]] = (),
    stop_fn: Callable[[int, list[int]], bool] | None = None,
    generator: GeneratorArg = None,
    use_cache: bool = True,
    decode_step: Callable | None = None,
    vocab_limit: int | None = None,
    proposer: Proposer | None = None,
) -> Iterator[list[int | None]]:
    """Generate step by step, yielding each row's new token (``None`` once a row is done).

    ``sampling`` holds the sampling rules (default: plain sampling at temperature 1).

    A row is done after ``eos_id`` (which is not yielded), after its tokens end with one of the
    ``stop`` id sequences (which are yielded), when ``stop_fn(row, tokens_so_far)`` returns True,
    or after ``max_new_tokens``. ``use_cache=False`` re-runs the full sequence every step (the
    reference the cache is tested against). ``decode_step`` replaces ``model`` for the one-token
    cached steps (e.g. :func:`compile_decode_step`). ``vocab_limit`` forbids ids >= it: a model
    whose vocabulary was padded past the tokenizer's (for matmul speed) never emits the padding.
    ``proposer`` (:class:`~nextok.generation.DraftModel` or
    :class:`~nextok.generation.PromptLookup`) turns on speculative decoding
    (:mod:`nextok.generation.speculative`): the same output distribution, token for token the
    same greedy output; a batched row may then also yield ``None`` at a position where another
    row accepted more tokens than it did.
    """
    params = SamplingParams() if sampling is None else sampling
    if not isinstance(params, SamplingParams):
        raise TypeError(f"sampling must be a SamplingParams, got {type(params).__name__}")
    if not prompts:
        return
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    lens = [len(p) for p in prompts]
    if min(lens) == 0:
        raise ValueError(f"prompt {lens.index(0)} is empty; generation needs at least one token")
    vocab = model.config.vocab_size
    bad = [t for p in prompts for t in p if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"prompt token id {bad[0]} is outside the model vocabulary [0, {vocab})")
    t0 = max(lens)
    check_fits(model, t0, max_new_tokens)
    if max_new_tokens == 0:
        return

    device = model.lm_head.weight.device
    B = len(prompts)
    pad = 0
    idx = torch.full((B, t0), pad, dtype=torch.long, device=device)
    mask = torch.zeros((B, t0), dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        idx[b, t0 - len(p) :] = torch.as_tensor(list(p), dtype=torch.long, device=device)
        mask[b, t0 - len(p) :] = 1
    attention_mask = None if min(lens) == t0 else mask

    pad_ids = torch.arange(vocab_limit or vocab, vocab, device=device)
    seen = None
    if params.repetition_penalty != 1.0:
        seen = torch.zeros((B, vocab), dtype=torch.bool, device=device)
        seen.scatter_(1, idx, mask.bool())

    was_training = model.training
    model.eval()
    if proposer is not None:
        from nextok.generation.speculative import speculative_stream, validate

        validate(params, use_cache, decode_step)
        try:
            yield from speculative_stream(
                model,
                proposer,
                idx,
                attention_mask,
                max_new_tokens,
                params,
                eos_id=eos_id,
                generator=generator,
                vocab=vocab,
                banned=pad_ids,
                is_done=lambda row, b: ends_with(row, stop) or bool(stop_fn and stop_fn(b, row)),
            )
        finally:
            model.train(was_training)
        return
    try:
        cache = model.make_kv_cache(B, max_seq_len=t0 + max_new_tokens) if use_cache else None
        logits, _ = model(idx, kv_cache=cache, attention_mask=attention_mask, last_only=True)
        step_fn = model if decode_step is None else decode_step
        generated: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        for step in range(max_new_tokens):
            last = logits[:, -1]
            if len(pad_ids):
                last = last.float().index_fill(-1, pad_ids, float("-inf"))
            nxt = sample_next(last, params, generator, seen)
            out: list[int | None] = []
            for b, tok in enumerate(nxt.tolist()):
                if done[b]:
                    out.append(None)
                elif eos_id is not None and tok == eos_id:
                    done[b] = True
                    out.append(None)
                else:
                    generated[b].append(tok)
                    out.append(tok)
                    if ends_with(generated[b], stop) or (stop_fn and stop_fn(b, generated[b])):
                        done[b] = True
            yield out
            if all(done) or step == max_new_tokens - 1:
                return
            if seen is not None:
                seen.scatter_(1, nxt[:, None], True)
            if use_cache:
                logits, _ = step_fn(nxt[:, None], kv_cache=cache, last_only=True)
            else:
                idx = torch.cat([idx, nxt[:, None]], dim=1)
                if attention_mask is not None:
                    attention_mask = torch.cat([attention_mask, torch.ones_like(nxt)[:, None]], 1)
                logits, _ = model(idx, attention_mask=attention_mask, last_only=True)
    finally:
        model.train(was_training)


def generate(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: SamplingParams | None = None,
    *,
    on_token: Callable[[list[int | None]], None] | None = None,
    **kwargs,
) -> list[list[int]]:
    """Generated ids per prompt (prompt and EOS excluded); see :func:`stream` for the options.

    ``on_token`` is called with every step's output (a streaming hook).
    """
    out: list[list[int]] = [[] for _ in prompts]
    for step in stream(model, prompts, max_new_tokens, sampling, **kwargs):
        if on_token is not None:
            on_token(step)
        for b, tok in enumerate(step):
            if tok is not None:
                out[b].append(tok)
    return out
