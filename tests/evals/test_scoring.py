"""Multiple-choice scoring against hand-computed log-likelihoods on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.evals import tiny_model, tiny_tokenizer
from nextok.data.tokenization.tokenizer import SpecialTokens
from nextok.evals import MCExample, context_prefix, evaluate_task, loglikelihoods
from nextok.evals.scoring import encode_example, task_requests

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


def _argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=xs.__getitem__)


def test_acc_acc_norm_and_acc_pmi_follow_the_hand_scores(setup):
    model, tok = setup
    eos = tok.token_to_id("<|endoftext|>")
    acc = acc_norm = acc_pmi = 0
    for ex in EXAMPLES:
        ctx, conts = encode_example(tok, ex)
        scores = [_hand_loglik(model, ctx, c) for c in conts]
        norm = [s / len(text) for s, text in zip(scores, ex.choices)]
        # calibrated: minus the choice's log-likelihood right after the document separator
        pmi = [s - _hand_loglik(model, [eos], c) for s, c in zip(scores, conts)]
        acc += _argmax(scores) == ex.gold
        acc_norm += _argmax(norm) == ex.gold
        acc_pmi += _argmax(pmi) == ex.gold
    res = evaluate_task(model, tok, EXAMPLES, block_size=64, batch_size=3, pmi=True)
    assert res.n == len(EXAMPLES)
    assert res.acc == pytest.approx(acc / len(EXAMPLES))
    assert res.acc_norm == pytest.approx(acc_norm / len(EXAMPLES))
    assert res.acc_pmi == pytest.approx(acc_pmi / len(EXAMPLES))
    assert res.chance == pytest.approx(sum(1 / len(e.choices) for e in EXAMPLES) / len(EXAMPLES))
    # without the option: the same acc/acc_norm, no acc_pmi (and no extra forwards)
    off = evaluate_task(model, tok, EXAMPLES, block_size=64, batch_size=3)
    assert (off.acc, off.acc_norm, off.acc_pmi) == (res.acc, res.acc_norm, None)
    # an explicit document start (e.g. a BOS) replaces the separator
    bos = evaluate_task(model, tok, EXAMPLES[:1], block_size=64, pmi=True, start_ids=[5])
    ctx, conts = encode_example(tok, EXAMPLES[0])
    pmi = [_hand_loglik(model, ctx, c) - _hand_loglik(model, [5], c) for c in conts]
    assert bos.acc_pmi == float(_argmax(pmi) == EXAMPLES[0].gold)


def test_acc_pmi_separates_what_acc_cannot():
    """A choice with a high prior wins acc; the calibrated score picks the one the context
    makes likelier. A 'model' whose logits are fixed tables shows it exactly."""

    class Bigram(torch.nn.Module):
        def __init__(self, table: torch.Tensor) -> None:
            super().__init__()
            self.table = table  # log-probs [prev token, next token]

        def forward(self, x):  # noqa: ANN001 - the Transformer's (logits, loss) interface
            return self.table[x], None

    from tokenizers import Tokenizer, models

    vocab = {"<|endoftext|>": 0, "c": 1, "a": 2, "b": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    # after <eos>: 'a' 0.7, 'b' 0.1; after 'c': 'a' 0.5, 'b' 0.4 -> b gains most from the context
    p = torch.full((4, 4), 0.05)
    p[0, 2], p[0, 3] = 0.7, 0.1
    p[1, 2], p[1, 3] = 0.5, 0.4
    table = (p / p.sum(-1, keepdim=True)).log()
    ex = [MCExample("c", ("a", "b"), 1)]
    res = evaluate_task(Bigram(table), tok, ex, block_size=8, pmi=True)
    assert (res.acc, res.acc_pmi) == (0.0, 1.0)


def test_context_ending_in_whitespace_moves_it_to_the_choices(setup):
    """Whitespace that ends a context is scored as the start of each choice (lm-eval's
    _encode_pair), so context + choice tokenize as the joined text does."""
    _, tok = setup
    ex = MCExample("def f(x):\n    ", ("return x", "pass"), 0)
    ctx, conts = encode_example(tok, ex)
    assert ctx == tok.encode("def f(x):", add_special_tokens=False).ids
    for cont, choice in zip(conts, ex.choices):
        assert ctx + cont == tok.encode(ex.context + choice, add_special_tokens=False).ids
    # a context without trailing whitespace is encoded as it is
    ctx, conts = encode_example(tok, EXAMPLES[1])
    assert ctx == tok.encode(EXAMPLES[1].context, add_special_tokens=False).ids
    assert conts[0] == tok.encode(" mat", add_special_tokens=False).ids


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
    full = evaluate_task(model, tok, EXAMPLES, block_size=64, pmi=True)
    parts = [
        evaluate_task(
            model,
            tok,
            EXAMPLES,
            block_size=64,
            rank=r,
            world_size=3,
            reduce=lambda t, op: t,
            pmi=True,
        )
        for r in range(3)
    ]
    n = sum(p.n for p in parts)
    assert n == len(EXAMPLES)
    assert sum(p.acc * p.n for p in parts) / n == pytest.approx(full.acc)
    assert sum(p.acc_norm * p.n for p in parts) / n == pytest.approx(full.acc_norm)
    assert sum(p.acc_pmi * p.n for p in parts) / n == pytest.approx(full.acc_pmi)


class _Table(torch.nn.Module):
    """A 'model' whose next-token log-probs depend on the previous token only."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x):  # noqa: ANN001 - the Transformer's (logits, loss) interface
        return self.table[x], None


def _char_tokenizer(chars: str):
    from tokenizers import Tokenizer, models

    vocab = {"<|endoftext|>": 0, **{ch: i + 1 for i, ch in enumerate(chars)}}
    return Tokenizer(models.BPE(vocab, [])), vocab


def test_acc_norm_divides_by_the_choice_without_its_separator():
    """lm-eval's acc_norm: log-likelihood / len(choice), the target delimiter (" ") excluded.
    Here " a" scores -2 and " bbb" -5: per character without the space b wins (-5/3 > -2/1);
    counting the space, a would (-2/2 > -5/4)."""
    tok, v = _char_tokenizer("c ab")
    p = torch.full((5, 5), 1e-3)
    p[v["c"], v[" "]] = math.exp(-1.0)
    p[v[" "], v["a"]] = math.exp(-1.0)
    p[v[" "], v["b"]] = p[v["b"], v["b"]] = math.exp(-4.0 / 3)
    for row in p:  # normalise each row, keeping the chosen entries exact
        rest = [j for j in range(5) if row[j] == 1e-3]
        row[rest] = (1.0 - (row.sum() - 1e-3 * len(rest))) / len(rest)
    ex = MCExample("c", (" a", " bbb"), 1, prefix=" ")
    res = evaluate_task(_Table(p.log()), tok, [ex], block_size=8)
    assert (res.acc, res.acc_norm) == (0.0, 1.0)  # acc: -2 > -5 picks a; acc_norm: -5/3 > -2/1


def test_contexts_start_with_the_bos_training_put_first(setup):
    model, tok = setup
    eos = tok.token_to_id("<|endoftext|>")
    assert context_prefix(tok, SpecialTokens(eos="<|endoftext|>")) == []
    bos = SpecialTokens(eos="<|endoftext|>", bos="<|endoftext|>", add_bos=True)
    assert context_prefix(tok, bos) == [eos]
    (ctx, cont), *_ = task_requests(tok, EXAMPLES[:1], context_prefix(tok, bos))
    plain, conts = encode_example(tok, EXAMPLES[0])
    assert (ctx, cont) == ([eos, *plain], conts[0])
