"""Multiple-choice scoring against hand-computed log-likelihoods on a tiny model."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import tiny_model, tiny_tokenizer

from nextok.evals import MCExample, evaluate_task, loglikelihoods
from nextok.evals.scoring import encode_example

EXAMPLES = [
    MCExample("def add(a, b):\n", ("    return a + b\n", "    pass\n", "import os\n"), 0),
    MCExample("The cat sat on the", (" mat", " moon and the stars", " chair"), 2),
    MCExample("x = [1, 2,", (" 3]", " four]", " 5, 6, 7, 8]", " None"), 1),
    MCExample("for i in range(10):\n", ("    print(i)\n", "print\n"), 1),
    MCExample("while True", (":", " do", "!"), 0),
]


@torch.no_grad()
def _hand_loglik(model, ctx: list[int], cont: list[int]) -> float:
    """One unpadded sequence at a time: sum of log p(cont_j | everything before it)."""
    seq = torch.tensor([ctx + cont])
    logp = torch.log_softmax(model(seq[:, :-1])[0][0].double(), -1)
    return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


@pytest.fixture(scope="module")
def setup():
    return tiny_model(), tiny_tokenizer()


def test_loglikelihoods_equal_hand_computation(setup):
    model, tok = setup
    requests = [
        (ctx, cont) for ex in EXAMPLES for ctx, conts in [encode_example(tok, ex)] for cont in conts
    ]
    batched = loglikelihoods(model, requests, block_size=64, batch_size=4)  # padded batches
    for (ctx, cont), got in zip(requests, batched):
        assert got == pytest.approx(_hand_loglik(model, ctx, cont), abs=1e-4)


def test_acc_and_acc_norm_follow_the_hand_scores(setup):
    model, tok = setup
    acc = acc_norm = 0
    for ex in EXAMPLES:
        ctx, conts = encode_example(tok, ex)
        scores = [_hand_loglik(model, ctx, c) for c in conts]
        norm = [s / len(text) for s, text in zip(scores, ex.choices)]
        acc += max(range(len(scores)), key=scores.__getitem__) == ex.gold
        acc_norm += max(range(len(norm)), key=norm.__getitem__) == ex.gold
    res = evaluate_task(model, tok, EXAMPLES, block_size=64, batch_size=3)
    assert res.n == len(EXAMPLES)
    assert res.acc == pytest.approx(acc / len(EXAMPLES))
    assert res.acc_norm == pytest.approx(acc_norm / len(EXAMPLES))
    assert res.chance == pytest.approx(sum(1 / len(e.choices) for e in EXAMPLES) / len(EXAMPLES))


def test_long_context_is_cut_from_the_left(setup):
    model, tok = setup
    ctx = tok.encode("a = 1\n" * 40, add_special_tokens=False).ids
    cont = tok.encode("b = 2\n", add_special_tokens=False).ids
    assert len(ctx) + len(cont) > 65
    (got,) = loglikelihoods(model, [(ctx, cont)], block_size=64)
    keep = (ctx + cont)[-65:]
    assert got == pytest.approx(_hand_loglik(model, keep[: -len(cont)], cont), abs=1e-4)
    # a choice longer than the window: its first block_size tokens after the last context token
    (cut,) = loglikelihoods(model, [(ctx, ctx)], block_size=64)
    assert cut == pytest.approx(_hand_loglik(model, ctx[-1:], ctx[:64]), abs=1e-4)
    ex = MCExample("a = 1\n", ("b = 2\n" * 40, " c"), 1)
    assert evaluate_task(model, tok, [ex], block_size=64).truncated == 1


def test_rank_shards_add_up_to_the_single_process_score(setup):
    """Shards of 3 simulated ranks, summed by a reduce over their counts, give the full result."""
    model, tok = setup
    full = evaluate_task(model, tok, EXAMPLES, block_size=64)
    parts = [
        evaluate_task(
            model, tok, EXAMPLES, block_size=64, rank=r, world_size=3, reduce=lambda t, op: t
        )
        for r in range(3)
    ]
    n = sum(p.n for p in parts)
    assert n == len(EXAMPLES)
    assert sum(p.acc * p.n for p in parts) / n == pytest.approx(full.acc)
    assert sum(p.acc_norm * p.n for p in parts) / n == pytest.approx(full.acc_norm)
