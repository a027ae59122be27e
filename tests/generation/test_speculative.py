"""Speculative decoding: greedy == plain token for token, sampled == the target's distribution,
exact limits and stops, batched rows accepting different counts, and refusals."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from helpers.generation import context_model as sensitive
from nextok.generation import (
    DraftModel,
    PromptLookup,
    Proposal,
    SamplingParams,
    generate,
    generate_text,
    make_generator,
    verify,
)
from nextok.generation.proposers import lookup

GREEDY = SamplingParams(temperature=0)


def prompts(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """Random prompts of 1..12 tokens, half of them with a repeated chunk (lookup hits)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = torch.randint(0, vocab, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g)
        out.append((p.tolist() * 2) if i % 2 else p.tolist())
    return out


def context_model(make_model, **kw):
    """``helpers.generation.context_model`` (``make_model`` is the same seeded factory)."""
    return sensitive(**kw)


def proposers(make_model, target):
    near = copy.deepcopy(target)  # a draft that agrees often but not always
    with torch.no_grad():
        for p in near.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return {
        "same": DraftModel(copy.deepcopy(target), 4),
        "near": DraftModel(near, 3, 0.0),
        "unsure": DraftModel(near, 6, 0.9),  # rows stop guessing at different counts
        "other": DraftModel(context_model(make_model, seed=7, n_layer=1), 5),
        "lookup": PromptLookup(4, 3),
        "lookup1": PromptLookup(2, 1),
    }


@pytest.mark.parametrize("name", ["same", "near", "unsure", "other", "lookup", "lookup1"])
def test_greedy_equals_plain_alone_and_batched(make_model, name):
    target = context_model(make_model)
    proposer = proposers(make_model, target)[name]
    ps = prompts(24, target.config.vocab_size)
    plain = generate(target, ps, 20, GREEDY)
    assert [generate(target, [p], 20, GREEDY, proposer=proposer)[0] for p in ps] == plain
    assert proposer.stats["proposed"] > 0
    if name != "other":
        assert proposer.stats["accepted"] > 0
    assert generate(target, ps, 20, GREEDY, proposer=proposer) == plain  # batched, padded
    assert generate(target, ps[:5], 20, GREEDY, proposer=proposer) == plain[:5]


@pytest.mark.parametrize("max_new", [30, 52])
def test_rows_accepting_different_counts(make_model, max_new):
    """Rows whose lookups hit differently: exact with room for holes in the cache (30 new
    tokens) and without (52: prompt + new tokens fill block_size, every row keeps the least)."""
    target = context_model(make_model)
    ps = [[1, 2, 3] * 4, [50, 51, 52, 53]]
    plain = generate(target, ps, max_new, GREEDY)
    proposer = PromptLookup(5, 2)
    assert generate(target, ps, max_new, GREEDY, proposer=proposer) == plain
    assert proposer.stats["accepted"] > 0


@pytest.mark.parametrize("name", ["same", "near", "unsure", "lookup"])
def test_max_new_tokens_and_stops_exact(make_model, name):
    target = context_model(make_model)
    ps = prompts(8, target.config.vocab_size, seed=3)
    for n in (1, 2, 3, 7):
        proposer = proposers(make_model, target)[name]
        assert generate(target, ps, n, GREEDY, proposer=proposer) == generate(target, ps, n, GREEDY)
    plain = generate(target, ps, 20, GREEDY)
    stop = [plain[0][5:7], plain[3][2:3]]  # stops that end rows inside a verified chunk
    eos = plain[1][4]
    want = generate(target, ps, 20, GREEDY, stop=stop, eos_id=eos)
    proposer = proposers(make_model, target)[name]
    got = generate(target, ps, 20, GREEDY, stop=stop, eos_id=eos, proposer=proposer)
    assert got == want
    assert len(got[0]) < 20 and len(got[1]) < 20


def test_stop_strings_cut_text_exactly(make_model, tokenizer):
    target = make_model(vocab_size=tokenizer.get_vocab_size())
    plain = generate_text(target, tokenizer, ["def ", "import "], 40, GREEDY)
    stop = [plain[0][3:6]] if len(plain[0]) > 6 else ["\n"]
    want = generate_text(target, tokenizer, ["def ", "import "], 40, GREEDY, stop=stop)
    for proposer in (PromptLookup(4, 3), DraftModel(copy.deepcopy(target), 4)):
        got = generate_text(
            target, tokenizer, ["def ", "import "], 40, GREEDY, stop=stop, proposer=proposer
        )
        assert got == want


def test_prompt_lookup_takes_latest_match():
    row = torch.tensor([1, 2, 3, 9, 1, 2, 4, 7, 1, 2])
    assert lookup(row, 3, 2).tolist() == [4, 7, 1]  # "1 2" last seen at 4
    assert lookup(row, 2, 3).tolist() == [4, 7]  # no earlier "7 1 2": falls back to "1 2"
    assert lookup(row, 2, 1).tolist() == [4, 7]  # "2" last seen (before the end) at 5
    # a run of one token: the latest "5 5" with 3 tokens after it, not the one at the end
    assert lookup(torch.tensor([5, 5, 5, 5, 5, 5]), 3, 2).tolist() == [5, 5, 5]
    assert lookup(torch.tensor([5, 5, 5, 5]), 3, 2).tolist() == [5, 5]  # none has 3: the longest
    assert lookup(torch.tensor([1, 2, 7, 1, 2, 8, 9, 3, 1, 2]), 2, 2).tolist() == [8, 9]
    assert lookup(torch.tensor([5, 6, 7]), 3, 3).tolist() == []
    assert lookup(torch.tensor([5]), 3, 3).tolist() == []


# ------------------------------------------------------------------ distributions
def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square test of ``counts`` against ``probs`` (cells with an expected count
    under 5 pooled into one)."""
    n = counts.sum()
    expected = probs * n
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum()[None]]).double()
    exp = torch.cat([expected[~small], expected[small].sum()[None]]).double()
    keep = exp > 0
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), stat / 2))


def exact_joint(model, prompt: list[int], n: int, params: SamplingParams) -> torch.Tensor:
    """P(first ``n`` tokens) under the target's sampling rule, every sequence enumerated."""
    from nextok.generation.sampling import next_token_probs

    V = model.config.vocab_size
    seqs = torch.tensor(list(itertools.product(range(V), repeat=n - 1)), dtype=torch.long)
    idx = torch.cat([torch.tensor(prompt).expand(len(seqs), -1), seqs], 1)
    with torch.no_grad():
        logits, _ = model(idx)
    p = next_token_probs(logits[:, len(prompt) - 1 :], params)  # (S, n, V)
    cells = torch.tensor(list(itertools.product(range(V), repeat=n)), dtype=torch.long)
    prefix = cells[:, :-1] @ (V ** torch.arange(n - 2, -1, -1))  # causal: one row serves all i
    return torch.stack([p[prefix, i, cells[:, i]] for i in range(n)], 1).prod(1)


@pytest.mark.parametrize(
    "name,params",
    [
        ("other", SamplingParams(temperature=1.0)),
        ("same", SamplingParams(temperature=1.0)),
        ("near", SamplingParams(temperature=0.8, top_k=6)),
        ("unsure", SamplingParams(temperature=1.0)),
        ("lookup", SamplingParams(temperature=1.0)),
    ],
)
def test_sampled_output_has_the_target_distribution(make_model, name, params):
    """20k samples of the first 3 tokens (vocab 8: 512 cells) against the exact target joint."""
    target = make_model(vocab_size=8)
    near = copy.deepcopy(target)
    with torch.no_grad():
        for p in near.parameters():
            p.add_(0.3 * torch.randn_like(p))
    proposer = {
        "other": DraftModel(make_model(vocab_size=8, seed=5, n_layer=1), 3),
        "same": DraftModel(copy.deepcopy(target), 2),
        "near": DraftModel(near, 2, 0.0),
        "unsure": DraftModel(near, 3, 0.3),  # each row's guess count follows its own draws
        "lookup": PromptLookup(3, 2),
    }[name]
    prompt = [1, 2, 3, 1, 2]
    n, rows = 3, 20_000
    out = generate(
        target, [prompt] * rows, n, params, proposer=proposer, generator=make_generator(0)
    )
    ids = torch.tensor(out)
    assert ids.shape == (rows, n)
    cells = (ids * torch.tensor([64, 8, 1])).sum(1)
    counts = torch.bincount(cells, minlength=512)
    assert chi_square_pvalue(counts, exact_joint(target, prompt, n, params)) > 1e-3
    assert proposer.stats["accepted"] > 0


def test_verify_rule_per_position_distribution():
    """The rule alone, 20k rows, fixed p and q per position: each emitted position ~ p."""
    torch.manual_seed(0)
    B, k, V = 20_000, 3, 6
    p_logits = torch.randn(k + 1, V).expand(B, -1, -1)
    q = torch.randn(k, V).softmax(-1).expand(B, -1, -1)
    d = torch.multinomial(q[0], B, replacement=True).T  # (B, k), column i ~ q_i
    prop = Proposal(d, torch.full((B,), k), q)
    params = SamplingParams(temperature=1.0)
    accepted, nxt = verify(p_logits, prop, params, make_generator(1))
    p = p_logits[0].softmax(-1)
    for i in range(k + 1):
        alive = accepted >= i  # rows that emit a token at position i
        tok = torch.where(accepted[alive] > i, d[alive, min(i, k - 1)], nxt[alive])
        assert chi_square_pvalue(torch.bincount(tok, minlength=V), p[i]) > 1e-3


def test_draft_stops_after_an_unsure_guess(make_model):
    """The confidence cut-off: 0 always proposes k; 1 stops after the first guess (no token
    has probability 1); in between, rows stop where the draft's own probability falls below it."""
    target = context_model(make_model)
    V = target.config.vocab_size
    seq = torch.randint(0, V, (4, 6), generator=torch.Generator().manual_seed(4))
    valid = torch.ones_like(seq, dtype=torch.bool)
    banned = torch.tensor([], dtype=torch.long)

    @torch.inference_mode()
    def lengths(threshold):
        drafter = DraftModel(copy.deepcopy(target), 5, threshold)
        drafter.start(seq[:, :-1], None, seq.shape[1] + 8, seq.shape[1] + 8)
        proposal = drafter.propose(seq, valid, 5, GREEDY, None, V, banned)
        probs = []  # the draft's own probability of each guess, fed one after another
        row = seq
        for i in range(proposal.tokens.shape[1]):
            p = target(row)[0][:, -1].softmax(-1)
            probs.append(p.gather(-1, proposal.tokens[:, i : i + 1])[:, 0])
            row = torch.cat([row, proposal.tokens[:, i : i + 1]], 1)
        return proposal.lengths.tolist(), torch.stack(probs, 1)

    assert lengths(0.0)[0] == [5] * 4
    assert lengths(1.0)[0] == [1] * 4
    _, probs = lengths(0.0)
    seen = set()
    cuts = probs.flatten().sort().values
    for threshold in ((cuts[1:] + cuts[:-1]) / 2)[::3].tolist():  # between two probabilities
        got, _ = lengths(threshold)
        unsure = (probs < threshold).long()
        assert got == [min(5, int(u.argmax()) + 1) if u.any() else 5 for u in unsure]
        seen.add(tuple(got))
    assert any(len(set(g)) > 1 for g in seen)  # rows stopped at different counts


# ------------------------------------------------------------------ refusals
def test_refusals(make_model):
    target = make_model()
    with pytest.raises(ValueError, match="repetition_penalty"):
        generate(
            target, [[1, 2]], 4, SamplingParams(repetition_penalty=1.2), proposer=PromptLookup()
        )
    with pytest.raises(ValueError, match="draft model.block_size=16"):
        generate(target, [[1, 2]], 30, GREEDY, proposer=DraftModel(make_model(block_size=16)))
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        PromptLookup(0)
    with pytest.raises(ValueError, match="prompt_lookup_max_ngram"):
        PromptLookup(4, 0)
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ValueError, match="draft_confidence_threshold must be in"):
            DraftModel(target, 4, bad)
