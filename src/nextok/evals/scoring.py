"""Score multiple-choice examples by log-likelihood: ``acc`` and ``acc_norm`` (plain PyTorch).

Each choice is the continuation of its context; its score is the summed log-probability of the
continuation's tokens (``acc``: argmax of the sums) and that sum divided by the continuation's
length in characters (``acc_norm``), the lm-evaluation-harness convention used for
HellaSwag/ARC/PIQA. Context and continuation are tokenized separately (no special tokens) and
concatenated, so every choice sees exactly the same context tokens; a context longer than the
model's window is cut from the left; a choice longer than the window is scored on its first
``block_size`` tokens (counted in ``TaskResult.truncated``).

Data parallel: rank ``r`` of ``W`` scores examples ``r, r + W, ...``; the (correct, correct_norm,
count) sums are all-reduced, so the result equals the single-process one. Every rank runs the
same number of forward passes (padding with dummy batches), as FSDP requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from nextok.evals.tasks import MCExample

Reduce = Callable[[torch.Tensor, str], torch.Tensor]


@dataclass
class TaskResult:
    acc: float
    acc_norm: float
    n: int
    chance: float
    truncated: int = 0  # choices longer than the window (scored on their first block_size tokens)

    def as_dict(self) -> dict[str, float]:
        return {
            "acc": self.acc,
            "acc_norm": self.acc_norm,
            "n": self.n,
            "chance": self.chance,
            "truncated": self.truncated,
        }


def encode_example(tokenizer: Tokenizer, ex: MCExample) -> tuple[list[int], list[list[int]]]:
    ctx = tokenizer.encode(ex.context, add_special_tokens=False).ids
    conts = [tokenizer.encode(c, add_special_tokens=False).ids for c in ex.choices]
    return ctx, conts


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
) -> TaskResult:
    """``acc``/``acc_norm`` of ``model`` on ``examples``, sharded over ``world_size`` ranks.

    ``reduce(tensor, op)`` ("sum" / "max") combines ranks; default: ``torch.distributed``.
    """
    reduce = reduce or _dist_reduce
    mine = list(examples)[rank::world_size]
    requests = []
    for ex in mine:
        ctx, conts = encode_example(tokenizer, ex)
        requests.extend((ctx, cont) for cont in conts)
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
    correct = correct_norm = 0.0
    pos = 0
    for ex in mine:
        k = len(ex.choices)
        scores = torch.tensor(ll[pos : pos + k], dtype=torch.float64)
        lengths = torch.tensor([max(1, len(c)) for c in ex.choices], dtype=torch.float64)
        correct += float(int(scores.argmax()) == ex.gold)
        correct_norm += float(int((scores / lengths).argmax()) == ex.gold)
        pos += k
    cut = float(sum(len(cont) > block_size for _, cont in requests))
    totals = torch.tensor([correct, correct_norm, float(len(mine)), cut], dtype=torch.float64)
    if world_size > 1:
        totals = reduce(totals.to(device), "sum").cpu()
    n = int(totals[2])
    chance = sum(1.0 / len(ex.choices) for ex in examples) / max(1, len(examples))
    return TaskResult(
        float(totals[0]) / max(1, n), float(totals[1]) / max(1, n), n, chance, int(totals[3])
    )
