"""Speculative decoding in the engine (prompt lookup): greedy output equals plain generation token
for token, sampled output has the target's distribution, limits, stops and EOS are exact, the
cache is rolled back to the kept tokens, and what the engine cannot take is refused (a draft
model: tests/serving/test_draft_model.py)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from generation.test_speculative import chi_square_pvalue, exact_joint
from helpers.checkpoints import write_checkpoint
from nextok.cli._conf import conf_dir
from nextok.cli.errors import CliError
from nextok.cli.serve import build
from nextok.generation import (
    DraftModel,
    PromptLookup,
    SamplingParams,
    generate,
    generate_text,
)
from nextok.serving import Engine, Request

GREEDY = SamplingParams(temperature=0)


def prompts(n: int, seed: int = 0) -> list[list[int]]:
    """Random prompts of 1..8 tokens, every other one repeated three times (lookup hits)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = torch.randint(0, 97, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g)
        out.append(p.tolist() * 3 if i % 2 else p.tolist())
    return out


@pytest.mark.parametrize(
    "k,ngram,kv_blocks,block_tokens,step_tokens",
    [(4, 3, None, 16, 256), (2, 1, 60, 4, 48), (6, 2, 60, 4, 48)],
)
def test_greedy_equals_plain_on_many_prompts(
    make_model, k, ngram, kv_blocks, block_tokens, step_tokens
):
    """24 prompts at once; with the small pool and budget also chunked prefill and preemption."""
    model = make_model()
    ps = prompts(24)
    proposer = PromptLookup(k, ngram)
    engine = Engine(
        model,
        proposer=proposer,
        kv_blocks=kv_blocks,
        block_size_tokens=block_tokens,
        max_tokens_per_step=step_tokens,
    )
    got = engine.generate([Request(p, 25, GREEDY) for p in ps])
    assert got == [generate(model, [p], 25, GREEDY)[0] for p in ps]
    assert proposer.stats["accepted"] > 0  # guesses were kept, so rollbacks were partial
    assert proposer.stats["accepted"] < proposer.stats["proposed"]  # and some were rejected
    assert engine.cache.allocator.num_used == 0


def test_steps_carry_several_tokens_and_the_cache_holds_only_kept_ones(make_model):
    model = make_model()
    prompt = [5, 6, 7, 8] * 4
    plain = generate(model, [prompt], 30, GREEDY)[0]
    proposer = PromptLookup(4, 3)
    engine = Engine(model, proposer=proposer, block_size_tokens=4)
    seq = engine.add(Request(prompt, 30, GREEDY))
    got: list[int] = []
    most = 0
    while engine.has_work:
        outs = [o for o in engine.step() if o.token is not None]
        got += [o.token for o in outs]
        most = max(most, len(outs))
        if seq in engine.cache.lengths:  # every kept token but the newest is cached
            assert engine.cache.lengths[seq] == len(prompt) + len(got) - 1
    assert got == plain
    assert most > 1


def test_max_new_tokens_stops_and_eos_exact(make_model, tokenizer):
    """Text requests with limits, stop strings and EOS: the same text and finish reasons as
    plain decoding."""
    model = make_model(vocab_size=tokenizer.get_vocab_size())
    eot = tokenizer.token_to_id("<|endoftext|>")
    texts = ["def f(x):\n    return x\n", "import os\nimport ", "class A:\n    pass\nclass "]
    free = generate_text(model, tokenizer, texts, 40, GREEDY)
    stop = [f[12:14] for f in free if len(f) > 14]
    assert stop
    asks = [(t, n, stop) for t in texts for n in (1, 2, 7, 40)] + [(t, 40, []) for t in texts]
    results = {}
    for proposer in (None, PromptLookup(4, 1)):
        engine = Engine(model, tokenizer=tokenizer, eos_id=eot, proposer=proposer)
        ids = [engine.add(Request(tokenizer.encode(t).ids, n, GREEDY, stop=s)) for t, n, s in asks]
        text, reasons = {}, {}
        while engine.has_work:
            for o in engine.step():
                text[o.seq_id] = text.get(o.seq_id, "") + o.text
                if o.finished:
                    reasons[o.seq_id] = o.finish_reason
        results[proposer is None] = ([text.get(i, "") for i in ids], [reasons[i] for i in ids])
    assert results[False] == results[True]
    assert proposer.stats["accepted"] > 0
    assert "stop" in results[True][1] and "length" in results[True][1]
    want = [generate_text(model, tokenizer, [t], 40, GREEDY, stop=stop)[0] for t in texts]
    assert results[True][0][3:12:4] == want
    assert results[True][0][12:] == free


@pytest.mark.slow  # 16-35 s on the loaded 2-core machine: 6,000 requests through the engine
@pytest.mark.parametrize("kind", ["prompt lookup", "draft model"])
def test_sampled_output_has_the_target_distribution(make_model, kind):
    """6,000 requests, the first 3 tokens of each (vocab 8: 512 cells) against the exact joint."""
    target = make_model(vocab_size=8)
    params = SamplingParams(temperature=1.0)
    prompt, n, rows = [1, 2, 3, 1, 2], 3, 6_000
    if kind == "draft model":  # another model: its q differs from p, so rejections happen
        proposer = DraftModel(make_model(vocab_size=8, seed=1), 2)
    else:
        proposer = PromptLookup(3, 2)
    engine = Engine(target, proposer=proposer, max_running=rows, max_tokens_per_step=8 * rows)
    out = engine.generate([Request(prompt, n, params, seed=i) for i in range(rows)])
    ids = torch.tensor(out)
    assert ids.shape == (rows, n)
    counts = torch.bincount((ids * torch.tensor([64, 8, 1])).sum(1), minlength=512)
    assert chi_square_pvalue(counts, exact_joint(target, prompt, n, params)) > 1e-3
    assert proposer.stats["accepted"] > 0


def test_seeded_sampling_does_not_depend_on_companions(make_model):
    model = make_model()
    ps = prompts(6, seed=3)
    params = SamplingParams(temperature=0.8, top_k=10)

    def run(reqs):
        return Engine(model, proposer=PromptLookup(3, 2)).generate(reqs)

    together = run([Request(p, 20, params, seed=i) for i, p in enumerate(ps)])
    assert together == [run([Request(p, 20, params, seed=i)])[0] for i, p in enumerate(ps)]
    again = run([Request(p, 20, params, seed=i) for i, p in enumerate(ps)])
    assert again == together


def test_repetition_penalty_and_prompt_scoring_run_plain(make_model):
    """Requests the rejection rule does not cover are decoded without guesses, exactly."""
    model = make_model()
    p = [4, 5, 6] * 5
    pen = SamplingParams(temperature=0, repetition_penalty=1.3)
    proposer = PromptLookup(4, 3)
    got = Engine(model, proposer=proposer).generate([Request(p, 12, pen)])
    assert got == [generate(model, [p], 12, pen)[0]]
    assert proposer.stats["proposed"] == 0


def test_what_the_engine_cannot_take_is_refused(make_model, tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="PromptLookup or DraftModel, got object$"):
        Engine(model, proposer=object())
    write_checkpoint(tmp_path / "last.ckpt")
    cfg = OmegaConf.load(f"{conf_dir()}/serve.yaml")
    cfg.ckpt, cfg.draft, cfg.num_speculative_tokens = (
        str(tmp_path / "last.ckpt"),
        "prompt_lookup",
        0,
    )
    with pytest.raises(
        CliError, match="^num_speculative_tokens must be a positive integer, got 0$"
    ):
        build(cfg)
    cfg.draft, cfg.num_speculative_tokens = str(tmp_path / "missing.ckpt"), 2
    with pytest.raises(CliError, match=r"^draft=.*missing.ckpt: "):
        build(cfg)


def test_serve_builds_a_prompt_lookup_engine(tmp_path):
    path = tmp_path / "last.ckpt"
    write_checkpoint(path)
    cfg = OmegaConf.load(f"{conf_dir()}/serve.yaml")
    cfg.ckpt, cfg.draft, cfg.num_speculative_tokens = str(path), "prompt_lookup", 5
    proposer = build(cfg).worker.engine.proposer
    assert isinstance(proposer, PromptLookup)
    assert (proposer.num_speculative_tokens, proposer.max_ngram) == (5, 3)


@pytest.mark.parametrize("overrides", [{}, dict(sliding_window=4)])
def test_same_length_chunks_attend_in_one_group(make_model, overrides):
    """Verification chunks (several tokens continuing a sequence) of the same length share one
    SDPA call with a causal mask per row: every position's logits equal the full forward's."""
    from nextok.serving.paged_cache import PagedKVCache

    model = make_model(**overrides)
    seqs = [[(5 * j + s) % 97 for j in range(n)] for s, n in ((1, 16), (2, 17), (3, 20))]
    cache = PagedKVCache(model.config, 40, 4)
    with torch.no_grad():
        for i, s in enumerate(seqs):  # everything but the last 3 tokens
            cache.grow(i, len(s) - 3)
            model(torch.tensor([s[:-3]]), kv_cache=cache.step([(i, len(s) - 3)]))
        for i, s in enumerate(seqs):
            cache.grow(i, len(s))
        step = cache.step([(i, 3) for i in range(3)])
        assert [g.size for g in step._groups] == [3]
        got = model(torch.tensor([sum((s[-3:] for s in seqs), [])]), kv_cache=step)[0][0]
        for i, s in enumerate(seqs):
            want = model(torch.tensor([s]))[0][0, -3:]
            torch.testing.assert_close(got[3 * i : 3 * i + 3], want, rtol=1e-4, atol=1e-4)
