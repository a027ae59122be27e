"""A draft model's guesses inside the serving engine, for every guessing sequence at once.

The engine's paged cache holds the target's keys and values; the draft model keeps its own in a
second :class:`~nextok.serving.paged_cache.PagedKVCache` (same block size, its own pool), so
that one draft forward serves every sequence that guesses in a step: the first feeds each
sequence the tokens its draft cache has not seen (the target's correction or bonus token, the
whole prompt the first time), the next ones one guess per sequence, for up to k forwards. A
sequence stops guessing at its own k, or after a guess the draft gives less than the proposer's
``confidence_threshold``. After the target verifies, a sequence's draft cache is cut back to the
tokens that stay; a finished or preempted sequence returns its draft blocks.

Each guess is drawn with its request's sampling rules and seeded generator, row by row (greedy:
the draft's argmax), by the rule ``nextok-generate``'s :class:`~nextok.generation.DraftModel`
uses (:func:`~nextok.generation.proposers.guess`): a request's generator serves its own rows
only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nextok.generation import DraftModel
from nextok.generation.proposers import fit_vocab, guess
from nextok.serving.blocks import OutOfBlocks
from nextok.serving.paged_cache import PagedKVCache

if TYPE_CHECKING:
    from nextok.generation import SamplingParams
    from nextok.model import Transformer


def check_draft(draft: Transformer, target: Transformer, vocab_limit: int | None) -> None:
    """Refuse a draft that cannot serve every request the target can: a shorter ``block_size``,
    fewer token ids than the tokenizer's (``vocab_limit``, else the target's vocabulary), or
    weights on another device."""
    mine, theirs = draft.config.block_size, target.config.block_size
    if mine < theirs:
        raise ValueError(
            f"the draft model's block_size {mine} is shorter than the target's {theirs}: "
            "requests the target accepts would not fit it"
        )
    need = vocab_limit or target.config.vocab_size
    if draft.config.vocab_size < need:
        raise ValueError(
            f"the draft model's vocab_size {draft.config.vocab_size} is smaller than the "
            f"{need} token ids it must score"
        )
    where, there = draft.lm_head.weight.device, target.lm_head.weight.device
    if where != there:
        raise ValueError(f"the draft model is on {where}, the target on {there}")


@dataclass
class Want:
    """One sequence's request for guesses: its id, its tokens so far (the first ``n_prompt``
    its prompt), at most ``k`` guesses, and the sampling rules and generator of its request."""

    seq_id: int
    tokens: Sequence[int]
    n_prompt: int
    k: int
    sampling: SamplingParams
    generator: torch.Generator | None


class PagedDraft:
    """The draft model and its paged KV cache for every sequence of one engine.

    ``num_blocks`` blocks of ``block_size_tokens``. Prompts that start with the same full
    blocks share them, as in the target's cache (with ``prefix_sharing``; sequences whose
    prompts enter in the same draft forward each compute theirs); a sequence that finds no room
    gets no guesses that step (:meth:`reserve`), nothing else changes."""

    def __init__(
        self,
        proposer: DraftModel,
        num_blocks: int,
        block_size_tokens: int,
        prefix_sharing: bool = True,
    ) -> None:
        self.model = proposer.model.eval()
        self.threshold = proposer.confidence_threshold
        self.prefix_sharing = prefix_sharing
        w = self.model.lm_head.weight
        config = self.model.config
        self.cache = PagedKVCache(config, num_blocks, block_size_tokens, w.dtype, w.device)

    def free(self, seq_id: int) -> None:
        self.cache.free(seq_id)

    def truncate(self, seq_id: int, keep: int) -> None:
        """Only the first ``keep`` tokens of the sequence stay in its draft cache (all of it
        goes when the roll-back would need a free block for a shared tail: it is rebuilt)."""
        if self.cache.lengths.get(seq_id, 0) > keep:
            try:
                self.cache.truncate(seq_id, keep)
            except OutOfBlocks:
                self.cache.free(seq_id)

    def reserve(self, want: Want) -> bool:
        """Make room for ``want``'s unseen tokens and its guesses fed back (all but the last);
        False when the pool cannot hold them (shared prefix blocks it took stay: they hold
        the right keys and values for its prompt)."""
        cache, seq = self.cache, want.seq_id
        if self.prefix_sharing and not cache.tables.get(seq):  # its last token is always fed
            blocks = (len(want.tokens) - 1) // cache.block_size
            shared = cache.match_prefix(want.tokens, blocks)
            if shared:
                cache.adopt(seq, shared)
        need = len(want.tokens) + want.k - 1
        if not cache.can_grow(seq, need):
            return False
        cache.grow(seq, need)
        return True

    @torch.inference_mode()
    def propose(
        self, wants: Sequence[Want], vocab: int, banned: torch.Tensor
    ) -> dict[int, tuple[list[int], torch.Tensor | None]]:
        """sequence id -> (its guesses, their distributions (1, n, V) or None when greedy),
        for ``wants`` that :meth:`reserve` accepted. A sequence gets fewer than its ``k`` after
        an unsure guess."""
        cache, device = self.cache, banned.device
        live = list(wants)
        guesses: dict[int, list[int]] = {w.seq_id: [] for w in live}
        qs: dict[int, list[torch.Tensor]] = {w.seq_id: [] for w in live}
        feed = {w.seq_id: list(w.tokens[cache.lengths[w.seq_id] :]) for w in live}
        first = True
        while live:
            chunks = [(w.seq_id, len(feed[w.seq_id])) for w in live]
            ids = [t for w in live for t in feed[w.seq_id]]
            last = torch.tensor(chunks, dtype=torch.long)[:, 1].cumsum(0) - 1
            step = cache.step(chunks, last.to(device))
            idx = torch.tensor(ids, dtype=torch.long, device=device)[None]
            logits = fit_vocab(self.model(idx, kv_cache=step)[0][0].float(), vocab, banned)
            if first and self.prefix_sharing:  # prompt blocks enter only in the first forward
                for w in live:
                    cache.register(w.seq_id, w.tokens, w.n_prompt)
            first = False
            picked, sure = self._pick(logits, live, qs)
            going = []
            for w, tok, p in zip(live, picked, sure):
                guesses[w.seq_id].append(tok)
                feed[w.seq_id] = [tok]
                if len(guesses[w.seq_id]) < w.k and p >= self.threshold:
                    going.append(w)
            live = going
        return {s: (g, torch.stack(qs[s], 0)[None] if qs[s] else None) for s, g in guesses.items()}

    def _pick(self, logits: torch.Tensor, live: Sequence[Want], qs) -> tuple[list, list]:
        """Each row's guess and the draft's probability of it: one call for an all-greedy
        batch, else row by row with each request's rules and generator."""
        confidence = self.threshold > 0
        if all(w.sampling.greedy for w in live):
            tok, _, sure = guess(logits, live[0].sampling, None, confidence)
            return tok.tolist(), sure.tolist() if confidence else [1.0] * len(live)
        toks, sures = [], []
        for row, w in zip(logits, live):
            tok, q, sure = guess(row[None], w.sampling, w.generator, confidence)
            if q is not None:
                qs[w.seq_id].append(q[0])
            toks.append(int(tok[0]))
            sures.append(float(sure[0]) if confidence else 1.0)
        return toks, sures
