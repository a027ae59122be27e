"""Score multiple-choice examples by log-likelihood: ``acc``, ``acc_norm``, ``acc_pmi``.

Each choice is the continuation of its context; its score is the summed log-probability of the
continuation's tokens (``acc``: argmax of the sums) and that sum divided by the choice's length
in characters without the task's separator (``acc_norm``: lm-evaluation-harness's, which divides
by the choice, not by its ``target_delimiter``), the convention used for HellaSwag/ARC/PIQA.
``acc_pmi`` (optional, one more forward per distinct choice; lm-eval's ``acc_mutual_info``)
ranks by log p(choice | context) - log p(choice | document start), the document start being the
token a training document follows (BOS, else the EOS separator): it removes each choice's prior,
which dominates the plain sum when the model is weak.

Tokens as lm-eval's ``hf`` backend makes them from an exported folder, so per-choice scores
equal lm-eval's: every context starts with the BOS when training put one before every document
(``context_prefix``; the exported tokenizer adds exactly that); whitespace that ends the context
is moved to the start of every continuation; the continuation is the joined text's tokens after
the context's (``_encode_pair``), so they are tokens the model saw in training (a byte-level BPE
merges a newline with the next line's indentation, ``Ċ`` + ``ĠĠĠ`` vs ``ĊĠĠĠ``). Tasks should put
the separator at the start of their choices (``" answer"``, ``"\n    next line"``). A context
longer than the model's window is cut from the left; a choice longer than the window is scored on
its first ``block_size`` tokens (counted in ``TaskResult.truncated``).

Data parallel: rank ``r`` of ``W`` scores examples ``r, r + W, ...``; the (correct,
correct_norm, correct_pmi, count) sums are all-reduced, so the result equals the single-process
one. Every rank runs the same number of forward passes (padding with dummy batches), as FSDP
requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from nextok.data.tokenization.tokenizer import EOT, SpecialTokens
from nextok.evals.tasks import MCExample

Reduce = Callable[[torch.Tensor, str], torch.Tensor]


METRICS = ("acc", "acc_norm", "acc_pmi")  # what a task reports (acc_pmi: only when asked)


@dataclass
class TaskResult:
    acc: float
    acc_norm: float
    n: int
    chance: float
    truncated: int = 0  # choices longer than the window (scored on their first block_size tokens)
    acc_pmi: float | None = None  # None: not computed (the task's ``pmi`` option is off)

    def as_dict(self) -> dict[str, float | None]:
        return {
            "acc": self.acc,
            "acc_norm": self.acc_norm,
            "acc_pmi": self.acc_pmi,
            "n": self.n,
            "chance": self.chance,
            "truncated": self.truncated,
        }


def encode_example(tokenizer: Tokenizer, ex: MCExample) -> tuple[list[int], list[list[int]]]:
    """Context and choice token ids (lm-eval's ``_encode_pair``): whitespace ending the context
    starts every choice instead; a choice is the joined text's tokens after the context's (when
    a token of the joined text spans the boundary, the choice's own tokens instead)."""
    context = ex.context.rstrip() or ex.context
    moved = ex.context[len(context) :]
    ctx = tokenizer.encode(context, add_special_tokens=False).ids
    conts = []
    for c in ex.choices:
        whole = tokenizer.encode(context + moved + c, add_special_tokens=False).ids
        if whole[: len(ctx)] == ctx:
            conts.append(whole[len(ctx) :])
        else:  # a token spans the boundary: lm-eval's split is ill-defined; score the choice alone
            conts.append(tokenizer.encode(moved + c, add_special_tokens=False).ids)
    return ctx, conts


def task_requests(
    tokenizer: Tokenizer, examples: Sequence[MCExample], prefix_ids: Sequence[int] = ()
) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) token ids of every choice of every example, in order; each
    context starts with ``prefix_ids`` (:func:`context_prefix`)."""
    requests = []
    for ex in examples:
        ctx, conts = encode_example(tokenizer, ex)
        requests.extend((list(prefix_ids) + ctx, cont) for cont in conts)
    return requests


def _dist_reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(
            t, op=torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
        )
    return t


@torch.no_grad()
def loglikelihoods(
    model: torch.nn.Module,
    requests: Sequence[tuple[list[int], list[int]]],
    *,
    block_size: int,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    min_batches: int = 0,
) -> list[float]:
    """Summed log-probability of each ``continuation`` given its ``context`` (one forward per batch).

    ``min_batches``: run dummy batches up to this count (equal forward counts across ranks).
    """
    seqs = []
    for ctx, cont in requests:
        if not cont or not ctx:
            raise ValueError("a context or a choice encodes to no tokens")
        # a choice longer than the window: only its first block_size tokens are scored
        cont = cont[:block_size]
        seq = (ctx + cont)[-(block_size + 1) :]
        seqs.append((seq, len(cont)))
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))  # similar lengths together
    out = [0.0] * len(seqs)
    n_batches = max(min_batches, -(-len(order) // batch_size))
    for b in range(n_batches):
        idx = order[b * batch_size : (b + 1) * batch_size]
        if not idx:  # a dummy batch: keep collective forwards (FSDP) in step with other ranks
            model(torch.zeros(1, 1, dtype=torch.long, device=device))
            continue
        T = max(len(seqs[i][0]) for i in idx) - 1
        x = torch.zeros(len(idx), T, dtype=torch.long)
        y = torch.full((len(idx), T), -100, dtype=torch.long)
        for r, i in enumerate(idx):
            seq, n_cont = seqs[i]
            t = torch.tensor(seq)
            x[r, : len(seq) - 1] = t[:-1]
            y[r, len(seq) - 1 - n_cont : len(seq) - 1] = t[-n_cont:]
        x, y = x.to(device), y.to(device)
        logits = model(x)[0].float()
        logp = F.log_softmax(logits, dim=-1)
        tok = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        sums = torch.where(y != -100, tok, 0.0).sum(dim=1).double().cpu()
        for r, i in enumerate(idx):
            out[i] = float(sums[r])
    return out


def evaluate_task(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    examples: Sequence[MCExample],
    *,
    block_size: int,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    reduce: Reduce | None = None,
    pmi: bool = False,
    start_ids: Sequence[int] | None = None,
    prefix_ids: Sequence[int] = (),
) -> TaskResult:
    """``acc``/``acc_norm`` (and ``acc_pmi`` if ``pmi``) of ``model`` on ``examples``, sharded
    over ``world_size`` ranks.

    ``reduce(tensor, op)`` ("sum" / "max") combines ranks; default: ``torch.distributed``.
    ``start_ids``: what a document starts after in training, the unconditional context of
    ``acc_pmi`` (default: the tokenizer's ``<|endoftext|>``, nextok's document separator).
    ``prefix_ids``: what every context starts with (:func:`context_prefix`).
    """
    reduce = reduce or _dist_reduce
    mine = list(examples)[rank::world_size]
    requests = task_requests(tokenizer, mine, prefix_ids)
    n_cond = len(requests)
    uncond: dict[tuple[int, ...], int] = {}  # distinct choice tokens -> index in requests
    if pmi:
        start = list(start_ids) if start_ids is not None else _default_start(tokenizer)
        for _, cont in requests[:n_cond]:
            if tuple(cont) not in uncond:
                uncond[tuple(cont)] = len(requests)
                requests.append((start, cont))
    n_batches = -(-len(requests) // batch_size)
    if world_size > 1:
        nb = torch.tensor([float(n_batches)], device=device)
        n_batches = int(reduce(nb, "max").item())
    was_training = model.training
    model.eval()
    try:
        ll = loglikelihoods(
            model,
            requests,
            block_size=block_size,
            batch_size=batch_size,
            device=device,
            min_batches=n_batches,
        )
    finally:
        model.train(was_training)
    correct = correct_norm = correct_pmi = 0.0
    pos = 0
    for ex in mine:
        k = len(ex.choices)
        scores = torch.tensor(ll[pos : pos + k], dtype=torch.float64)
        skip = len(ex.prefix)
        lengths = torch.tensor([max(1, len(c) - skip) for c in ex.choices], dtype=torch.float64)
        correct += float(int(scores.argmax()) == ex.gold)
        correct_norm += float(int((scores / lengths).argmax()) == ex.gold)
        if pmi:
            prior = [ll[uncond[tuple(cont)]] for _, cont in requests[pos : pos + k]]
            calibrated = scores - torch.tensor(prior, dtype=torch.float64)
            correct_pmi += float(int(calibrated.argmax()) == ex.gold)
        pos += k
    cut = float(sum(len(cont) > block_size for _, cont in requests[:n_cond]))
    totals = torch.tensor(
        [correct, correct_norm, correct_pmi, float(len(mine)), cut], dtype=torch.float64
    )
    if world_size > 1:
        totals = reduce(totals.to(device), "sum").cpu()
    n = max(1, int(totals[3]))
    chance = sum(1.0 / len(ex.choices) for ex in examples) / max(1, len(examples))
    return TaskResult(
        acc=float(totals[0]) / n,
        acc_norm=float(totals[1]) / n,
        n=int(totals[3]),
        chance=chance,
        truncated=int(totals[4]),
        acc_pmi=float(totals[2]) / n if pmi else None,
    )


def document_start(tokenizer: Tokenizer, special: SpecialTokens | None) -> list[int] | None:
    """The token a training document follows (its BOS, else the EOS separator): ``acc_pmi``'s
    unconditional context. None without special tokens (then ``<|endoftext|>`` is used)."""
    if special is None:
        return None
    return [special.bos_id(tokenizer) if special.add_bos else special.eos_id(tokenizer)]


def context_prefix(tokenizer: Tokenizer, special: SpecialTokens | None) -> list[int]:
    """The BOS when training put one before every document (what the exported tokenizer, hence
    lm-eval, prepends to a context), else nothing."""
    if special is None or not special.add_bos:
        return []
    return [special.bos_id(tokenizer)]


def _default_start(tokenizer: Tokenizer) -> list[int]:
    i = tokenizer.token_to_id(EOT)
    if i is None:
        raise ValueError(
            f"acc_pmi: the tokenizer has no {EOT}; pass start_ids (the token a document follows)"
        )
    return [i]
