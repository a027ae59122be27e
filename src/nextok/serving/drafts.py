"""A draft model's guesses inside the serving engine, one sequence at a time.

The engine's paged cache holds the target's keys and values; the draft model keeps its own,
per sequence, in a contiguous :class:`~nextok.model.KVCache` sized for that request (prompt +
``max_new_tokens``), through the same :class:`~nextok.generation.DraftModel` that
``nextok-generate`` uses (batch 1). After the target verifies a guess, the draft cache is cut
back to the tokens that stay, so the next proposal feeds only what the draft has not seen (the
target's correction or bonus token, or several tokens after a step without guesses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from nextok.generation import DraftModel

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


class SeqDraft:
    """The draft model's state for one sequence: a :class:`DraftModel` over the shared draft
    weights with its own cache of ``columns`` positions, and the distributions of its last
    proposal (``q``: None when greedy)."""

    def __init__(self, proposer: DraftModel, columns: int) -> None:
        self.drafter = DraftModel(
            proposer.model.eval(), proposer.num_speculative_tokens, proposer.confidence_threshold
        )
        self.drafter.cache = proposer.model.make_kv_cache(1, max_seq_len=columns)
        self.q: torch.Tensor | None = None

    def propose(
        self,
        tokens: list[int],
        k: int,
        params: SamplingParams,
        generator: torch.Generator | None,
        vocab: int,
        banned: torch.Tensor,
    ) -> list[int]:
        """Up to ``k`` tokens following ``tokens`` (the sequence so far), drawn with the
        request's sampling rules and generator (greedy: the draft's argmax); fewer when the
        draft is unsure (its ``confidence_threshold``)."""
        device = banned.device
        seq = torch.tensor([tokens], dtype=torch.long, device=device)
        valid = torch.ones_like(seq, dtype=torch.bool)
        proposal = self.drafter.propose(seq, valid, k, params, generator, vocab, banned)
        n = int(proposal.lengths[0])
        self.q = None if proposal.q is None else proposal.q[:, :n]
        return proposal.tokens[0, :n].tolist()

    def rollback(self, keep: int) -> None:
        """Only the first ``keep`` tokens of the sequence stay in the draft cache."""
        self.drafter.rollback(torch.ones((1, keep), dtype=torch.bool, device=self._device))
        self.q = None

    @property
    def _device(self) -> torch.device:
        return self.drafter.model.lm_head.weight.device
