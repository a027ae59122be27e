"""Autoregressive generation: sampling rules and a KV-cached prefill + decode loop.

The loop is ``prefill`` (the whole, left-padded prompt batch in one forward pass, filling a
:class:`~nextok.model.KVCache`) followed by ``decode`` (one token per row per step, attending to
the cache). Each step's logits go through the sampling rules in a fixed order::

    repetition penalty -> temperature (0 = greedy) -> top-k -> top-p -> min-p -> draw

**Context limit (chosen behaviour: a clear error).** A row may never hold more than
``model.config.block_size`` tokens (prompt + new tokens). :func:`generate` checks this *before*
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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nextok.special_tokens import EOT

if TYPE_CHECKING:  # tokenizers is only needed by the text helpers
    from tokenizers import Tokenizer

    from nextok.model import Transformer

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


# --------------------------------------------------------------------------- sampling rules
@dataclass(frozen=True)
class SamplingParams:
    """Validated sampling options; ``None`` (or the neutral value) disables a rule.

    temperature: 0 means greedy (argmax); otherwise logits are divided by it.
    top_k: keep the k most likely tokens (``None`` or 0: off).
    top_p: nucleus; keep the smallest most-likely prefix whose probability mass is >= top_p
        (``None`` or 1.0: off).
    min_p: keep tokens whose probability is >= min_p * (probability of the best token)
        (``None`` or 0: off).
    repetition_penalty: CTRL-style; logits of tokens already in the row (prompt or generated)
        are divided by it when positive and multiplied when negative (1.0: off).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (
            not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0
        ):
            raise ValueError(
                f"top_k must be a positive integer (or null/0 to disable), got {self.top_k!r}"
            )
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (or null to disable), got {self.top_p!r}")
        if self.min_p is not None and not 0.0 <= self.min_p < 1.0:
            raise ValueError(f"min_p must be in [0, 1) (or null to disable), got {self.min_p!r}")
        if self.repetition_penalty <= 0:
            raise ValueError(
                f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Penalise tokens marked in ``seen`` (B, V bool): divide positive logits, multiply negative."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set all but the ``k`` largest logits of each row to -inf (ties at the k-th value kept)."""
    if not k or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Keep the smallest prefix of most-likely tokens whose probability mass is >= ``p``.

    A token is dropped when the mass of the tokens ranked above it already reaches ``p``; the
    most likely token is always kept.
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float | None) -> torch.Tensor:
    """Drop tokens whose probability is below ``min_p`` times the best token's probability."""
    if not min_p:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(probs < threshold, float("-inf"))


def _draw(probs: torch.Tensor, generator: GeneratorArg) -> torch.Tensor:
    """One categorical draw per row: argmax(p / Exp(1)) (exact, and sync-free on GPU).

    A sequence of generators gives each row its own random stream, so a row's sample does not
    depend on which other rows share its batch.
    """
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    else:
        if len(generator) != probs.size(0):
            raise ValueError(f"got {len(generator)} generators for a batch of {probs.size(0)} rows")
        noise = torch.stack(
            [
                torch.empty_like(row).exponential_(1.0, generator=g)
                for row, g in zip(probs, generator)
            ]
        )
    return (probs / noise).argmax(dim=-1)


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: GeneratorArg = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick the next token of each row from last-position logits (B, V); returns (B,) ids."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    logits = top_k_filter(logits, params.top_k)
    logits = top_p_filter(logits, params.top_p)
    logits = min_p_filter(logits, params.min_p)
    return _draw(logits.softmax(dim=-1), generator)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A seeded ``torch.Generator`` on ``device`` (None when ``seed`` is None)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


# --------------------------------------------------------------------------- decode loop
def compile_decode_step(model: Transformer, **compile_kwargs) -> Callable:
    """``torch.compile`` the model for the one-token decode steps (the prefill stays eager).

    ``dynamic=True`` keeps one graph for every cache length instead of recompiling per step.
    """
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


def _ends_with(seq: list[int], tails: Sequence[Sequence[int]]) -> bool:
    return any(len(t) and len(seq) >= len(t) and seq[-len(t) :] == list(t) for t in tails)


@torch.inference_mode()
def stream(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    stop: Sequence[Sequence[int]] = (),
    stop_fn: Callable[[int, list[int]], bool] | None = None,
    generator: GeneratorArg = None,
    use_cache: bool = True,
    decode_step: Callable | None = None,
    vocab_limit: int | None = None,
) -> Iterator[list[int | None]]:
    """Generate step by step, yielding each row's new token (``None`` once a row is done).

    A row is done after ``eos_id`` (which is not yielded), after its tokens end with one of the
    ``stop`` id sequences (which are yielded), when ``stop_fn(row, tokens_so_far)`` returns True,
    or after ``max_new_tokens``. ``use_cache=False`` re-runs the full sequence every step (the
    reference the cache is tested against). ``decode_step`` replaces ``model`` for the one-token
    cached steps (e.g. :func:`compile_decode_step`). ``vocab_limit`` forbids ids >= it: a model
    whose vocabulary was padded past the tokenizer's (for matmul speed) never emits the padding.
    """
    params = SamplingParams(temperature, top_k, top_p, min_p, repetition_penalty)
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
                    if _ends_with(generated[b], stop) or (stop_fn and stop_fn(b, generated[b])):
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
    *,
    on_token: Callable[[list[int | None]], None] | None = None,
    **kwargs,
) -> list[list[int]]:
    """Generated ids per prompt (prompt and EOS excluded); see :func:`stream` for the options.

    ``on_token`` is called with every step's output (a streaming hook).
    """
    out: list[list[int]] = [[] for _ in prompts]
    for step in stream(model, prompts, max_new_tokens, **kwargs):
        if on_token is not None:
            on_token(step)
        for b, tok in enumerate(step):
            if tok is not None:
                out[b].append(tok)
    return out


# --------------------------------------------------------------------------- text helpers
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
    cut before the first of the ``stop`` strings. ``on_text(row, delta)`` streams printable text
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
    generate(model, ids, max_new_tokens, eos_id=eos_id, stop_fn=on_row, **kwargs)
    for b, s in enumerate(streams):
        delta = s.flush()
        if delta and on_text is not None:
            on_text(b, delta)
    return [s.text for s in streams]
