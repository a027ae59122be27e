"""Speculative decoding: a proposer guesses k tokens, the target scores them in one forward.

:func:`verify` is the rule (Leviathan et al. 2023; Chen et al. 2023): proposed token ``d`` at
position i is accepted with probability ``min(1, p_i(d) / q_i(d))``; at the first rejection the
row's next token is drawn from ``norm(max(0, p_i - q_i))``, and when every proposed token is
accepted a bonus token is drawn from ``p_{k+1}``. Each emitted token is then distributed as the
target's own sampling rule says, whatever the proposer (for n-gram lookup ``q`` is a point mass);
greedy accepts while the proposal equals the target's argmax, so the output is the plain greedy
output. :func:`verify` returns each row's accepted count; the rollback is the rest.

:func:`speculative_stream` drives it on the contiguous :class:`~nextok.model.KVCache`, whose rows
share one length. In a batch each row keeps its own accepted count: the positions a row rejected
while another row accepted more become holes in its cache, hidden like left padding (positions
count real tokens only). Holes take cache room; when they would no longer fit, every row keeps
the smallest accepted count among the unfinished rows (plus its own next token: its accepted
proposal, or its correction). Stopping a row's accepted run early is exact (every emitted token
is still a draw from the target's distribution given its prefix); it only costs speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from nextok.generation.proposers import Proposal, Proposer
from nextok.generation.sampling import (
    GeneratorArg,
    SamplingParams,
    draw,
    next_token_probs,
    sample_next,
    uniform,
)

if TYPE_CHECKING:
    from nextok.model import Transformer


def verify(
    logits: torch.Tensor,
    proposal: Proposal,
    params: SamplingParams,
    generator: GeneratorArg = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(accepted (B,), next (B,)) from the target's ``logits`` (B, k+1, V) at the k proposed
    positions and the one after: row b keeps ``accepted[b]`` proposed tokens, then ``next[b]``
    (its correction after a rejection, or the bonus token when all were accepted)."""
    d, lengths = proposal.tokens, proposal.lengths
    B, k = d.shape
    real = torch.arange(k, device=d.device)[None, :] < lengths[:, None]
    if params.greedy:
        best = logits.argmax(-1)
        ok = (best[:, :k] == d) & real
        accepted = ok.long().cumprod(1).sum(1)
        return accepted, best.gather(1, accepted[:, None])[:, 0]
    p = next_token_probs(logits, params)
    p_d = p[:, :k].gather(-1, d[..., None])[..., 0]
    q_d = (
        torch.ones_like(p_d) if proposal.q is None else proposal.q.gather(-1, d[..., None])[..., 0]
    )
    ok = (uniform(B, k, generator, d.device) * q_d < p_d) & real
    accepted = ok.long().cumprod(1).sum(1)
    rows = torch.arange(B, device=d.device)
    target = p[rows, accepted]  # (B, V): p at each row's first unaccepted position
    rejected = accepted < lengths
    if rejected.any():
        at = accepted.clamp(max=k - 1)
        if proposal.q is None:
            q = torch.zeros_like(target).scatter_(-1, d[rows, at][:, None], 1.0)
        else:
            q = proposal.q[rows, at]
        residual = (target - q).clamp(min=0)
        mass = residual.sum(-1, keepdim=True)
        residual = torch.where(mass > 0, residual / mass.clamp(min=1e-30), target)
        target = torch.where(rejected[:, None], residual, target)
    return accepted, draw(target, generator)


def validate(params: SamplingParams, use_cache: bool, decode_step: Callable | None) -> None:
    if params.repetition_penalty != 1.0:
        raise ValueError(
            "repetition_penalty is not supported with speculative decoding (draft=...); "
            "set repetition_penalty=1.0 or drop draft"
        )
    if not use_cache or decode_step is not None:
        raise ValueError(
            "speculative decoding (draft=...) runs the eager, KV-cached target; "
            "drop use_cache=False / compile"
        )


@torch.inference_mode()
def speculative_stream(
    model: Transformer,
    proposer: Proposer,
    idx: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    params: SamplingParams,
    *,
    eos_id: int | None,
    generator: GeneratorArg,
    vocab: int,
    banned: torch.Tensor,
    is_done: Callable[[list[int], int], bool],
) -> Iterator[list[int | None]]:
    """The speculative generation loop behind :func:`~nextok.generation.stream` (checked
    inputs, left-padded ``idx``). Yields one token per row per position like the plain loop;
    ``None`` for a row that is done or has nothing new at that position (it accepted fewer
    tokens than another row in this step)."""
    B, t0 = idx.shape
    needed = t0 + max_new_tokens
    # room for holes: a batch lets each row keep its own accepted count while they fit
    columns = min(model.config.block_size, needed + (max_new_tokens if B > 1 else 0))
    columns = proposer.start(idx, attention_mask, needed, columns)
    cache = model.make_kv_cache(B, max_seq_len=columns)
    logits, _ = model(idx, kv_cache=cache, attention_mask=attention_mask, last_only=True)
    nxt = sample_next(_cut(logits[:, -1], banned), params, generator)
    seq = torch.cat([idx, nxt[:, None]], 1)
    valid = torch.ones_like(seq, dtype=torch.bool)
    if attention_mask is not None:
        valid[:, :t0] = attention_mask.bool()
    new_rows = [[t] for t in nxt.tolist()]
    generated: list[list[int]] = [[] for _ in range(B)]
    n_out = [0] * B  # tokens each row has produced (eos included)
    done = [False] * B
    while True:
        for j in range(max(len(r) for r in new_rows)):  # report and check, position by position
            out: list[int | None] = []
            for b, row in enumerate(new_rows):
                tok = row[j] if j < len(row) else None
                if done[b] or tok is None:
                    out.append(None)
                    continue
                n_out[b] += 1
                if eos_id is not None and tok == eos_id:
                    done[b] = True
                    out.append(None)
                    continue
                generated[b].append(tok)
                out.append(tok)
                done[b] = is_done(generated[b], b) or n_out[b] == max_new_tokens
            yield out
            if all(done):
                return
        live = torch.tensor([not x for x in done], device=seq.device)
        left = torch.tensor([max_new_tokens - n for n in n_out], device=seq.device)  # >= 1 live
        k = min(proposer.num_speculative_tokens, int(left[live].max()) - 1)
        proposal = None
        if k > 0:
            proposal = proposer.propose(seq, valid, k, params, generator, vocab, banned)
            lengths = torch.minimum(proposal.lengths, left - 1) * live
            proposal = Proposal(proposal.tokens, lengths, proposal.q)
            k = int(lengths.max())
        length = seq.shape[1]  # the target's cache holds length - 1 of them
        if k == 0:
            logits, _ = model(seq[:, -1:], kv_cache=cache, last_only=True)
            nxt = sample_next(_cut(logits[:, -1], banned), params, generator)
            valid = torch.cat([valid, torch.ones_like(nxt[:, None], dtype=torch.bool)], 1)
            seq = torch.cat([seq, nxt[:, None]], 1)
            proposer.rollback(valid[:, :-1])
            new_rows = [[t] for t in nxt.tolist()]
            continue
        assert proposal is not None
        d = proposal.tokens[:, :k]
        proposal = Proposal(d, proposal.lengths, None if proposal.q is None else proposal.q[:, :k])
        logits, _ = model(torch.cat([seq[:, -1:], d], 1), kv_cache=cache)
        accepted, nxt = verify(_cut(logits, banned), proposal, params, generator)
        accepted = accepted * live
        # every row keeps its own count when the holes fit, else all keep the smallest count
        m = int(accepted.max())
        if length + m + int((left - accepted - 1)[live].max()) > columns:
            m = int(accepted[live].min())
        kept = accepted.clamp(max=m)
        last = torch.where(accepted > m, d[:, min(m, k - 1)], nxt)
        new = torch.cat([d[:, :m], last[:, None]], 1)
        new_valid = torch.arange(m + 1, device=seq.device)[None, :] < kept[:, None]
        new_valid[:, m] = True
        seq, valid = torch.cat([seq, new], 1), torch.cat([valid, new_valid], 1)
        cache.truncate(length + m)
        cache.mark_valid(valid[:, :-1])
        proposer.rollback(valid[:, :-1])
        proposer.stats["proposed"] += int(proposal.lengths.sum())
        proposer.stats["accepted"] += int(kept.sum())
        new_rows = [[*r[:c], t] for r, c, t in zip(d.tolist(), kept.tolist(), last.tolist())]


def _cut(logits: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    """Float logits over the ``vocab`` ids, ``banned`` ids (padding past the tokenizer) -inf."""
    logits = logits.float()
    return logits.index_fill(-1, banned, float("-inf")) if len(banned) else logits
