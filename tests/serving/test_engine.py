"""The engine against the single-prompt path: every request's output equals ``generate`` on that
prompt alone, whatever the batch, arrival time, chunking, cancellations and pool pressure.

Exact here means token for token: the engine's logits are those of the single-prompt path up to
float rounding (a different batch shape sums in a different order), so a near-tie could in
principle pick another token; on these fp32 models none does.
"""

from __future__ import annotations

import pytest
import torch

from nextok.generation import SamplingParams, generate, generate_text, make_generator
from nextok.serving import Engine, Request

GREEDY = SamplingParams(temperature=0)
SAMPLE = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.2)
LENGTHS = (3, 17, 1, 30, 8, 40, 12)


def prompts(lengths=LENGTHS, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 97, (n,), generator=g).tolist() for n in lengths]


def alone(model, prompt, n, sampling=GREEDY, seed=None):
    return generate(model, [prompt], n, sampling, generator=make_generator(seed))[0]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(pos="learned", norm="layernorm", mlp="gelu", n_kv_head=4),
        dict(n_kv_head=1, qk_norm=True),
        dict(sliding_window=6),  # every layer sees the last 6 positions only
        dict(sliding_window=5, sliding_layers=[1]),  # one sliding layer, one full
    ],
)
@pytest.mark.parametrize("kv_blocks,block_tokens,step_tokens", [(None, 16, 256), (40, 4, 7)])
def test_greedy_equals_each_prompt_alone(
    make_model, overrides, kv_blocks, block_tokens, step_tokens
):
    """Mixed prompt lengths, one batch; chunked prefill when the step budget is small."""
    model = make_model(**overrides)
    ps = prompts()
    engine = Engine(
        model, kv_blocks=kv_blocks, block_size_tokens=block_tokens, max_tokens_per_step=step_tokens
    )
    assert engine.generate([Request(p, 20, GREEDY) for p in ps]) == [
        alone(model, p, 20) for p in ps
    ]
    assert engine.cache.allocator.num_used == 0  # every block came back


def test_moe_model_greedy_equals_alone(make_model):
    model = make_model(mlp="moe", n_experts=4, moe_top_k=2, moe_ffn_hidden=16)
    ps = prompts((5, 22, 2))
    assert Engine(model).generate([Request(p, 12, GREEDY) for p in ps]) == [
        alone(model, p, 12) for p in ps
    ]


def test_arrivals_mid_run_and_cancellation(make_model):
    model = make_model()
    ps = prompts()
    engine = Engine(model, kv_blocks=40, block_size_tokens=4, max_tokens_per_step=16)
    got: dict[int, list[int]] = {}
    reasons: dict[int, str] = {}

    def run(steps):
        for _ in range(steps):
            for o in engine.step():
                if o.token is not None:
                    got.setdefault(o.seq_id, []).append(o.token)
                if o.finished:
                    reasons[o.seq_id] = o.finish_reason

    ids = [engine.add(Request(p, 20, GREEDY)) for p in ps[:3]]
    run(4)
    ids += [engine.add(Request(p, 20, GREEDY)) for p in ps[3:5]]
    victim = engine.add(Request(ps[5], 20, GREEDY))
    run(6)
    engine.cancel(victim)
    ids.append(engine.add(Request(ps[6], 20, GREEDY)))
    while engine.has_work:
        run(1)
    assert reasons[victim] == "cancelled" and len(got.get(victim, [])) < 20
    expect = [alone(model, p, 20) for p in ps[:5] + ps[6:]]
    assert [got[i] for i in ids] == expect
    assert all(reasons[i] == "length" for i in ids)
    assert engine.cache.allocator.num_used == 0


def test_pool_exhaustion_preempts_and_recomputes_exactly(make_model):
    """A pool far smaller than the batch: sequences wait or are preempted, none is cut short."""
    model = make_model()
    ps = prompts()
    engine = Engine(model, kv_blocks=16, block_size_tokens=4, max_tokens_per_step=9)
    assert engine.generate([Request(p, 20, GREEDY) for p in ps]) == [
        alone(model, p, 20) for p in ps
    ]
    assert engine.preemptions > 0
    assert engine.cache.allocator.peak_used <= 16


def test_a_request_that_can_never_fit_is_refused(make_model):
    engine = Engine(make_model(), kv_blocks=4, block_size_tokens=4)
    with pytest.raises(ValueError, match="need 5 KV blocks; the pool has 4"):
        engine.add(Request(list(range(10)), 8))
    with pytest.raises(ValueError, match="exceeds model.block_size=64"):
        Engine(make_model()).add(Request(list(range(50)), 20))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.add(Request([1, 200], 2))
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.add(Request([], 2))


def test_seeded_sampling_is_reproducible_whatever_the_companions(make_model):
    """Each request draws from its own seeded generator: its tokens equal the single-prompt
    path with the same seed, alone or among others, under chunking and preemption."""
    model = make_model()
    ps = prompts()
    expect = [alone(model, p, 20, SAMPLE, seed=100 + i) for i, p in enumerate(ps)]
    big = Engine(model)
    assert big.generate([Request(p, 20, SAMPLE, seed=100 + i) for i, p in enumerate(ps)]) == expect
    small = Engine(model, kv_blocks=16, block_size_tokens=4, max_tokens_per_step=9)
    reqs = [Request(p, 20, SAMPLE, seed=100 + i) for i, p in enumerate(ps)][::-1]
    assert small.generate(reqs) == expect[::-1]
    assert small.preemptions > 0


def test_stop_strings_and_eos_as_generate_text(make_model, tokenizer):
    """Text requests: the engine's text equals generate_text's (stop string cut, EOS ends)."""
    model = make_model(vocab_size=tokenizer.get_vocab_size())
    texts = ["def ", "import", "class Point:\n"]
    eot = tokenizer.token_to_id("<|endoftext|>")
    sampling = SamplingParams(temperature=1.0)
    free = [  # stops picked from the unstopped texts, so that they do fire
        generate_text(model, tokenizer, [t], 30, sampling, generator=make_generator(i))[0]
        for i, t in enumerate(texts)
    ]
    stop = [f[10:12] for f in free if len(f) > 12]
    assert stop
    engine = Engine(model, tokenizer=tokenizer, eos_id=eot)
    got = {}
    ids = [
        engine.add(Request(tokenizer.encode(t).ids, 30, sampling, seed=i, stop=stop))
        for i, t in enumerate(texts)
    ]
    reasons = {}
    while engine.has_work:
        for o in engine.step():
            got[o.seq_id] = got.get(o.seq_id, "") + o.text
            if o.finished:
                reasons[o.seq_id] = o.finish_reason
    for i, t in enumerate(texts):
        ref = generate_text(
            model, tokenizer, [t], 30, sampling, stop=stop, generator=make_generator(i)
        )[0]
        assert got[ids[i]] == ref
        assert all(s not in got[ids[i]] for s in stop)
    assert "stop" in reasons.values()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(sliding_window=4),
        dict(sliding_window=3, sliding_layers=[0]),
        dict(logit_softcap=2.0),  # the capped logits, as the model's own forward returns
    ],
)
def test_prompt_and_token_logprobs_equal_a_full_forward(make_model, overrides):
    """Every position's log-probabilities, over prefill chunks and decodes: sliding-window
    layers see only the last ``sliding_window`` positions, as in the model's own forward."""
    model = make_model(**overrides)
    p = prompts((13,))[0]
    engine = Engine(model, max_tokens_per_step=5)  # the prompt is scored over three chunks
    sid = engine.add(Request(p, 3, GREEDY, logprobs=2, echo_logprobs=True))
    outs = []
    while engine.has_work:
        outs += engine.step()
    (scored,) = [o for o in outs if o.prompt_logprobs is not None]
    new = [o.token for o in outs if o.seq_id == sid and o.token is not None]
    with torch.no_grad():
        logp = model(torch.tensor([p + new]))[0][0].float().log_softmax(-1)
    want = [logp[i, t].item() for i, t in enumerate((p + new)[1:])]
    got = [lp for lp, _ in scored.prompt_logprobs[1:]]
    got += [o.logprob for o in outs if o.token is not None]
    assert scored.prompt_logprobs[0] == (None, {})
    assert got == pytest.approx(want[: len(got)], abs=1e-5) and len(got) == len(p) - 1 + 3
    top = scored.prompt_logprobs[1][1]
    assert len(top) == 2 and max(top.values()) == pytest.approx(logp[0].max().item(), abs=1e-5)


def test_prompt_only_request_scores_without_generating(make_model):
    model = make_model()
    p = prompts((9,))[0]
    engine = Engine(model)
    engine.add(Request(p, 0, echo_logprobs=True))
    outs = engine.step()
    assert len(outs) == 1 and outs[0].finish_reason == "length" and outs[0].token is None
    assert len(outs[0].prompt_logprobs) == 9 and not engine.has_work


def test_rows_with_different_sampling_rules_in_one_step_each_equal_alone(make_model):
    """One step samples every row in one call with per-row parameters: greedy, temperature,
    top-k, top-p, min-p and repetition penalty mixed in a batch, each as generated alone."""
    model = make_model()
    rules = [
        GREEDY,
        SamplingParams(temperature=0.7),
        SamplingParams(temperature=1.3, top_k=5),
        SamplingParams(temperature=0.9, top_p=0.5),
        SamplingParams(temperature=1.0, min_p=0.2),
        SamplingParams(temperature=0, repetition_penalty=1.5),
        SAMPLE,
    ]
    ps = prompts()
    expect = [alone(model, p, 15, r, seed=7 + i) for i, (p, r) in enumerate(zip(ps, rules))]
    got = Engine(model).generate(
        [Request(p, 15, r, seed=7 + i) for i, (p, r) in enumerate(zip(ps, rules))]
    )
    assert got == expect
