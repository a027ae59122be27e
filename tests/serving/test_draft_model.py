"""A draft model in the engine: greedy output equals plain generation and ``nextok-generate``'s
speculative loop with the same draft, token for token (chunked prefill and preemption included);
sampling passes the draft's distributions to the rejection rule; ``nextok-serve draft=PATH``
builds it; a draft too short for the target's requests is refused."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from helpers.checkpoints import write_checkpoint
from nextok.checkpoint import load_checkpoint
from nextok.cli._conf import conf_dir
from nextok.cli.errors import CliError
from nextok.cli.serve import build
from nextok.generation import DraftModel, SamplingParams, generate
from nextok.serving import Engine, Request
from nextok.serving.drafts import PagedDraft
from serving.test_speculation import prompts

GREEDY = SamplingParams(temperature=0)


def near_copy(model, noise: float = 0.15, seed: int = 1):
    """The target with perturbed weights: a draft that agrees with it often, not always."""
    draft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    return draft


@pytest.mark.parametrize(
    "k,threshold,kv_blocks,block_tokens,step_tokens",
    [(4, 0.4, None, 16, 256), (2, 0.0, 60, 4, 48), (6, 0.4, 60, 4, 48), (6, 0.9, None, 16, 256)],
)
def test_greedy_equals_plain_and_generate_with_the_same_draft(
    make_model, k, threshold, kv_blocks, block_tokens, step_tokens
):
    """24 prompts at once; with the small pool and budget also chunked prefill and preemption;
    with a confidence threshold, sequences guess different counts per step."""
    model = make_model()
    draft = near_copy(model)
    ps = prompts(24)
    proposer = DraftModel(draft, k, threshold)
    engine = Engine(
        model,
        proposer=proposer,
        kv_blocks=kv_blocks,
        block_size_tokens=block_tokens,
        max_tokens_per_step=step_tokens,
    )
    got = engine.generate([Request(p, 25, GREEDY) for p in ps])
    plain = [generate(model, [p], 25, GREEDY)[0] for p in ps]
    assert got == plain
    alone = DraftModel(draft, k, threshold)  # nextok-generate's speculative loop, same draft
    assert got == [generate(model, [p], 25, GREEDY, proposer=alone)[0] for p in ps]
    assert 0 < proposer.stats["accepted"] < proposer.stats["proposed"]
    assert engine.cache.allocator.num_used == 0
    if kv_blocks:
        assert engine.preemptions > 0


def test_sampling_hands_the_draft_distributions_to_the_rejection_rule(make_model):
    """A draft equal to the target proposes from p itself, so every guess is accepted; read as
    point masses (no q), most would be rejected. Seeded requests do not depend on companions."""
    model = make_model()
    params = SamplingParams(temperature=1.0)
    ps = prompts(6, seed=5)
    proposer = DraftModel(model, 3, 0.0)  # always 3 guesses
    reqs = [Request(p, 16, params, seed=i) for i, p in enumerate(ps)]
    together = Engine(model, proposer=proposer).generate(reqs)
    assert proposer.stats["proposed"] > 50
    assert proposer.stats["accepted"] == proposer.stats["proposed"]
    alone = [Engine(model, proposer=DraftModel(model, 3, 0.0)).generate([r])[0] for r in reqs]
    assert together == alone


def test_a_draft_that_cannot_serve_every_request_is_refused(make_model, tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="^the draft model's block_size 32 is shorter than the"):
        Engine(model, proposer=DraftModel(make_model(block_size=32), 2))
    small = DraftModel(make_model(vocab_size=90), 2)
    with pytest.raises(ValueError, match="^the draft model's vocab_size 90 is smaller than the 97"):
        Engine(model, proposer=small)
    engine = Engine(model, proposer=small, vocab_limit=90)  # ids >= 90: padding, never drafted
    p = [5, 6, 7, 8]
    got = engine.generate([Request(p, 12, GREEDY)])[0]
    assert got == generate(model, [p], 12, GREEDY, vocab_limit=90)[0]
    write_checkpoint(tmp_path / "last.ckpt")
    write_checkpoint(tmp_path / "short.ckpt", block_size=32)
    cfg = OmegaConf.load(f"{conf_dir()}/serve.yaml")
    cfg.ckpt, cfg.draft = str(tmp_path / "last.ckpt"), str(tmp_path / "short.ckpt")
    with pytest.raises(CliError, match="^the draft model's block_size 32 is shorter than the"):
        build(cfg)


def test_serve_builds_a_draft_model_engine(tmp_path):
    """``nextok-serve draft=PATH``: the engine speculates with the loaded draft and its greedy
    output is ``nextok-generate draft=PATH``'s."""
    write_checkpoint(tmp_path / "last.ckpt")
    target, _ = write_checkpoint(tmp_path / "draft.ckpt")
    cfg = OmegaConf.load(f"{conf_dir()}/serve.yaml")
    cfg.ckpt, cfg.draft, cfg.num_speculative_tokens = str(tmp_path / "last.ckpt"), "x", 3
    cfg.draft = str(tmp_path / "draft.ckpt")
    engine = build(cfg).worker.engine
    proposer = engine.proposer
    assert isinstance(proposer, DraftModel) and proposer.num_speculative_tokens == 3
    draft = load_checkpoint(tmp_path / "draft.ckpt").model
    p = [5, 6, 7, 8, 9, 10]
    got = engine.generate([Request(p, 20, GREEDY)])[0]
    assert got == generate(target, [p], 20, GREEDY, proposer=DraftModel(draft, 3))[0]
    assert proposer.stats["accepted"] > 0


def test_the_draft_cache_keeps_only_tokens_that_stay(make_model):
    """After every step each sequence's draft cache holds a prefix of its tokens, never a
    rejected guess (it lags the newest token, which the draft has not been fed yet), and a
    finished sequence's draft blocks are back in the pool."""
    model = make_model()
    proposer = DraftModel(near_copy(model), 4)
    engine = Engine(model, proposer=proposer)
    for p in prompts(4, seed=2):
        engine.add(Request(p, 30, GREEDY))
    checked = 0
    drafts = engine.drafts.cache
    while engine.has_work:
        engine.step()
        for seq in engine.running:
            if seq.id in drafts.lengths:
                assert drafts.lengths[seq.id] < len(seq.tokens)
                checked += 1
        alive = {s.id for s in engine.running}
        assert set(drafts.tables) <= alive  # finished sequences returned their draft blocks
    assert checked and proposer.stats["accepted"] < proposer.stats["proposed"]
    assert drafts.allocator.num_used == 0


def test_shared_prefix_blocks_and_eos(make_model):
    """Requests whose prompts share full KV blocks (the target computes them once; each draft
    cache holds its own copy) and an EOS id: the plain engine's output, request by request."""
    model = make_model()
    base = [(7 * i) % 97 for i in range(40)]
    ps = [base, base + [3], base[:33], base]
    reqs = [Request(p, 20, GREEDY) for p in ps]
    plain = Engine(model, eos_id=10, block_size_tokens=8, max_tokens_per_step=40).generate(reqs)
    assert min(map(len, plain)) < 20  # some requests end at the EOS
    proposer = DraftModel(near_copy(model), 3)
    engine = Engine(
        model, proposer=proposer, eos_id=10, block_size_tokens=8, max_tokens_per_step=40
    )
    assert engine.generate(reqs) == plain
    assert proposer.stats["accepted"] > 0
    assert engine.cache.shared_blocks > 0 and engine.cache.allocator.num_used == 0


def test_shared_prompt_under_pool_pressure_keeps_seeded_draws(make_model):
    """Nine requests behind one 40-token prompt in a 60-block pool: the draft pool (twice the
    target's, sharing prompt blocks too) always has room, so the seeded request gets the same
    guesses, hence the same tokens, as alone."""
    model = make_model()
    base = [(7 * i) % 97 for i in range(40)]
    sampled = SamplingParams(temperature=1.0)

    def engine():
        proposer = DraftModel(near_copy(model), 4, 0.0)
        return Engine(model, proposer=proposer, kv_blocks=60, block_size_tokens=8)

    for seed in range(3):
        mine = Request(base + [1], 20, sampled, seed=seed)
        others = [Request(base + [i + 2], 20, GREEDY) for i in range(8)]
        crowded = engine()
        together = crowded.generate([*others[:4], mine, *others[4:]])
        assert together[4] == engine().generate([mine])[0]
        assert crowded.preemptions == 0 and crowded.drafts.cache.shared_blocks > 0
        assert crowded.drafts.cache.allocator.num_used == 0


def test_a_full_draft_pool_only_skips_guesses(make_model):
    """A draft pool too small for every sequence: those without room decode plainly that step;
    the output is still the plain output and every block comes back."""
    model = make_model()
    ps = prompts(12, seed=9)
    plain = Engine(model).generate([Request(p, 20, GREEDY) for p in ps])
    proposer = DraftModel(near_copy(model), 4, 0.0)
    engine = Engine(model, proposer=proposer)
    engine.drafts = PagedDraft(proposer, 6, 16)  # room for two or three sequences at a time
    refused = 0
    reserve = engine.drafts.reserve

    def counting(want):
        nonlocal refused
        ok = reserve(want)
        refused += not ok
        return ok

    engine.drafts.reserve = counting
    assert engine.generate([Request(p, 20, GREEDY) for p in ps]) == plain
    assert refused > 0 and proposer.stats["accepted"] > 0
    assert engine.drafts.cache.allocator.num_used == 0 and engine.cache.allocator.num_used == 0
