"""Proposers for speculative decoding: cheap guesses of the next tokens that the target verifies.

A proposer sees the left-padded batch of every token so far and returns a :class:`Proposal`: up
to k tokens per row and, for a draft model, the distribution each was drawn from (``q``; ``None``
means each proposed token is a point mass, as for n-gram lookup). After verification the loop
calls :meth:`Proposer.rollback` with the number of tokens that stay, so a proposer with state (a
KV cache) drops what was rejected. Nothing here depends on the contiguous cache of
:mod:`nextok.generation.loop`: a batching engine can drive the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from nextok.generation.sampling import GeneratorArg, SamplingParams, draw, next_token_probs

if TYPE_CHECKING:
    from nextok.model import KVCache, Transformer


@dataclass
class Proposal:
    """``tokens`` (B, k) proposed ids; ``lengths`` (B,) how many of them are real per row (the
    rest is filler, never accepted); ``q`` (B, k, V) the draft distributions, or None for point
    masses."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    q: torch.Tensor | None = None


class Proposer(Protocol):
    """What the speculative loop needs from a source of guesses."""

    num_speculative_tokens: int
    stats: dict[str, int]  # "proposed" / "accepted" tokens, counted by the loop

    def start(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None, needed: int, columns: int
    ) -> int:
        """A new batch: ``idx`` (B, T) the left-padded prompts; the rows reach ``needed``
        tokens, the loop would use up to ``columns`` positions (tokens and holes). Returns how
        many positions it can hold (at least ``needed``, or it raises ``ValueError``)."""

    def propose(
        self,
        seq: torch.Tensor,
        valid: torch.Tensor,
        k: int,
        params: SamplingParams,
        generator: GeneratorArg,
        vocab: int,
        banned: torch.Tensor,
    ) -> Proposal:
        """Up to ``k`` tokens following ``seq`` (B, L); ``valid`` (B, L) marks real tokens
        (False: left padding or a rejected token's hole); ``vocab``: the size of the
        distributions; ``banned``: ids never to propose."""

    def rollback(self, valid: torch.Tensor) -> None:
        """Only the first ``valid.shape[1]`` columns of ``seq`` stay, ``valid`` marking the
        real ones."""


class DraftModel:
    """A smaller model with the target's tokenizer proposes up to ``num_speculative_tokens``
    tokens, one cached forward each, sampled with the target's sampling rules (greedy: argmax).

    A row stops guessing after a token the draft gave less than ``confidence_threshold``
    probability (as ``transformers``' ``assistant_confidence_threshold``, whose default 0.4 this
    shares; 0 always proposes k): an unsure guess is likely rejected, and every guess fed to the
    target's verify forward costs time. The cut-off depends on the draft alone, so the rejection
    rule stays exact."""

    def __init__(
        self,
        model: Transformer,
        num_speculative_tokens: int = 4,
        confidence_threshold: float = 0.4,
    ) -> None:
        _check_k(num_speculative_tokens)
        t = confidence_threshold
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0.0 <= t <= 1.0:
            raise ValueError(f"draft_confidence_threshold must be in [0, 1], got {t!r}")
        self.model = model
        self.num_speculative_tokens = num_speculative_tokens
        self.confidence_threshold = float(t)
        self.stats = {"proposed": 0, "accepted": 0}
        self.cache: KVCache | None = None

    def start(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None, needed: int, columns: int
    ) -> int:
        block = self.model.config.block_size
        if needed > block:
            raise ValueError(
                f"draft model.block_size={block} is shorter than prompt + max_new_tokens "
                f"({needed}); use a draft with a longer context or generate fewer tokens"
            )
        self.model.eval()
        columns = min(columns, block)
        self.cache = self.model.make_kv_cache(idx.shape[0], max_seq_len=columns)
        self.model(idx, kv_cache=self.cache, attention_mask=attention_mask, last_only=True)
        return columns

    def propose(self, seq, valid, k, params, generator, vocab, banned) -> Proposal:
        assert self.cache is not None, "start() first"
        start = self.cache.seq_len
        new, mask = seq[:, start:], valid[:, start:]
        mask = None if bool(mask.all()) else mask  # holes among the tokens the draft has not seen
        tokens, qs = [], []
        lengths = torch.zeros(seq.shape[0], dtype=torch.long, device=seq.device)
        going = torch.ones(seq.shape[0], dtype=torch.bool, device=seq.device)
        for _ in range(k):
            logits, _ = self.model(new, kv_cache=self.cache, attention_mask=mask, last_only=True)
            logits = fit_vocab(logits[:, -1].float(), vocab, banned)
            tok, q, sure = guess(logits, params, generator, self.confidence_threshold > 0)
            if q is not None:
                qs.append(q)
            tokens.append(tok)
            lengths += going
            if sure is not None:  # a row stops after an unsure guess
                going &= sure >= self.confidence_threshold
                if not bool(going.any()):
                    break
            new, mask = tok[:, None], None
        out = torch.stack(tokens, 1)
        return Proposal(out, lengths, torch.stack(qs, 1) if qs else None)

    def rollback(self, valid: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.truncate(min(self.cache.seq_len, valid.shape[1]))
            self.cache.mark_valid(valid[:, : self.cache.seq_len])


class PromptLookup:
    """N-gram lookup in the text so far (prompt included), as ``transformers``'
    ``prompt_lookup_num_tokens``: the last n tokens (n = ``max_ngram`` down to 1) are searched
    for earlier in the row; the tokens that followed the most recent match are the proposal
    (``transformers`` takes the first: on code the nearest repeat predicts better, 53% of
    guesses kept against 38% on held-out stdlib windows, docs/fast-decoding.md)."""

    def __init__(self, num_speculative_tokens: int = 4, max_ngram: int = 3) -> None:
        _check_k(num_speculative_tokens)
        if not isinstance(max_ngram, int) or isinstance(max_ngram, bool) or max_ngram < 1:
            raise ValueError(
                f"prompt_lookup_max_ngram must be a positive integer, got {max_ngram!r}"
            )
        self.num_speculative_tokens = num_speculative_tokens
        self.max_ngram = max_ngram
        self.stats = {"proposed": 0, "accepted": 0}

    def start(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None, needed: int, columns: int
    ) -> int:
        return columns

    def propose(self, seq, valid, k, params, generator, vocab, banned) -> Proposal:
        rows = [lookup(seq[b][valid[b]], k, self.max_ngram) for b in range(seq.shape[0])]
        tokens = torch.zeros((seq.shape[0], k), dtype=torch.long, device=seq.device)
        for b, row in enumerate(rows):
            tokens[b, : len(row)] = row
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=seq.device)
        return Proposal(tokens, lengths)

    def rollback(self, valid: torch.Tensor) -> None:
        pass


def lookup(row: torch.Tensor, k: int, max_ngram: int) -> torch.Tensor:
    """Up to ``k`` ids that followed the latest earlier occurrence of ``row``'s last n ids that
    has k ids after it (else the earliest, whose continuation is the longest),
    trying n = ``max_ngram`` .. 1; empty when nothing matches."""
    n_tokens = row.shape[0]
    for n in range(min(max_ngram, n_tokens - 1), 0, -1):
        windows = row[:-1].unfold(0, n, 1)  # every n-gram that has a token after it
        hits = (windows == row[-n:]).all(-1).nonzero()[:, 0] + n  # where continuations start
        if len(hits):
            full = hits[hits + k <= n_tokens]  # in a run of one token the last match gives 1
            start = int(full[-1] if len(full) else hits[0])  # else the longest continuation
            return row[start : start + k]
    return row[:0]


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"num_speculative_tokens must be a positive integer, got {k!r}")


def guess(
    logits: torch.Tensor, params: SamplingParams, generator: GeneratorArg, confidence: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """A draft's next token per row of ``logits`` (B, V) under the target's sampling rules:
    (tokens (B,), the distributions they were drawn from (None when greedy: a point mass for
    the rejection rule), the draft's probability of each token (None unless ``confidence``))."""
    if params.greedy:
        tok, q = logits.argmax(-1), None
        probs = logits.softmax(-1) if confidence else None
    else:
        q = probs = next_token_probs(logits, params)
        tok = draw(q, generator)
    sure = probs.gather(-1, tok[:, None])[:, 0] if confidence else None
    return tok, q, sure


def fit_vocab(logits: torch.Tensor, vocab: int, banned: torch.Tensor) -> torch.Tensor:
    """Draft logits over the target's ``vocab`` ids; ``banned`` (the ids past the tokenizer's,
    padding) -inf. Draft and target may pad their vocabularies differently."""
    size, limit = logits.shape[-1], vocab - len(banned)
    if size < limit:
        raise ValueError(
            f"the draft model's vocab_size {size} is smaller than the tokenizer's {limit}"
        )
    logits = logits[..., :vocab]
    if size < vocab:
        logits = torch.nn.functional.pad(logits, (0, vocab - size), value=float("-inf"))
    return logits.index_fill(-1, banned, float("-inf")) if len(banned) else logits
