"""``attention="flex"``: decodes read the paged pool in place through FlexAttention. Same
contract as the gather path (tests/serving/test_engine.py): every request's greedy output equals
``generate`` on its prompt alone, under chunked prefill, arrivals mid-run and pool pressure; one
compiled kernel serves every step whatever the number of decodes."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from nextok.generation import SamplingParams, generate
from nextok.serving import Engine, Request

GREEDY = SamplingParams(temperature=0)


def prompts(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 97, (n,), generator=g).tolist() for n in lengths]


def alone(model, prompt, n):
    return generate(model, [prompt], n, GREEDY)[0]


@pytest.mark.parametrize(
    "overrides,kv_blocks,block_tokens,step_tokens",
    [
        ({}, None, 16, 256),
        (dict(n_kv_head=1, qk_norm=True), 16, 4, 9),  # GQA 4:1; a small pool: preemptions
    ],
)
def test_flex_greedy_equals_each_prompt_alone(
    make_model, overrides, kv_blocks, block_tokens, step_tokens
):
    model = make_model(**overrides)
    ps = prompts((3, 17, 1, 30, 8, 40, 12))
    engine = Engine(
        model,
        kv_blocks=kv_blocks,
        block_size_tokens=block_tokens,
        max_tokens_per_step=step_tokens,
        attention="flex",
    )
    torch._dynamo.utils.counters.clear()
    assert engine.generate([Request(p, 20, GREEDY) for p in ps]) == [
        alone(model, p, 20) for p in ps
    ]
    assert engine.cache.allocator.num_used == 0
    if kv_blocks is not None:
        assert engine.preemptions > 0  # the tail-length buffer survives sequences leaving
    # decodes from 7 down to 1 per step, lengths growing: one graph, plus the one-row case
    # (dynamic shapes specialise a size of 1)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2


def test_flex_arrivals_mid_run(make_model):
    """Requests join while others decode: the decode group changes size every few steps."""
    model = make_model()
    ps = prompts((5, 22, 9, 14, 2))
    engine = Engine(model, block_size_tokens=4, max_tokens_per_step=16, attention="flex")
    ids = [engine.add(Request(ps[0], 15, GREEDY))]
    got: dict[int, list[int]] = {}
    for step in range(200):
        if step in (2, 4, 7, 11):
            ids.append(engine.add(Request(ps[len(ids)], 15, GREEDY)))
        for o in engine.step():
            if o.token is not None:
                got.setdefault(o.seq_id, []).append(o.token)
        if len(ids) == len(ps) and not engine.has_work:
            break
    assert [got[i] for i in ids] == [alone(model, p, 15) for p in ps]


def test_flex_refusals(make_model):
    with pytest.raises(ValueError, match="attention=flex does not cover sliding-window"):
        Engine(make_model(sliding_window=6), attention="flex")
    with pytest.raises(ValueError, match="attention must be one of"):
        Engine(make_model(), attention="paged")


def test_a_second_engine_reuses_the_kernel_with_its_own_lengths(make_model):
    """The compiled kernel is shared by every engine of the process; it must read each cache's
    own tail lengths (a kernel that baked in the first engine's would attend wrong keys)."""
    model = make_model()
    first = Engine(model, block_size_tokens=8, attention="flex")
    ps = prompts((6, 19, 11), seed=3)
    assert first.generate([Request(p, 10, GREEDY) for p in ps]) == [alone(model, p, 10) for p in ps]
    torch._dynamo.utils.counters.clear()
    second = Engine(model, block_size_tokens=8, attention="flex")
    qs = prompts((13, 2, 27), seed=4)
    assert second.generate([Request(q, 10, GREEDY) for q in qs]) == [
        alone(model, q, 10) for q in qs
    ]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0  # reused, not recompiled
