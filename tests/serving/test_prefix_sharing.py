"""Prefix sharing: requests whose prompts start with the same full blocks hold one copy of them.

Shared runs give the outputs of unshared runs (and of each prompt alone), every block comes back
at the end, and a roll-back into a shared block copies it rather than writing where others read.
"""

from __future__ import annotations

import pytest
import torch

from nextok.generation import SamplingParams, generate
from nextok.model import ModelConfig
from nextok.serving import Engine, PagedKVCache, Request

GREEDY = SamplingParams(temperature=0)


def _prompts():
    g = torch.Generator().manual_seed(3)
    common = torch.randint(0, 97, (23,), generator=g).tolist()
    tails = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (1, 6, 0, 9, 2)]
    return [common + t for t in tails] + [common[:10]]


def _run(model, sharing: bool, **sizes):
    """The first request alone for three steps (its prompt computed), then the rest join."""
    engine = Engine(model, block_size_tokens=4, prefix_sharing=sharing, **sizes)
    ps = _prompts()
    ids = [engine.add(Request(ps[0], 12, GREEDY))]
    out: dict[int, list[int]] = {ids[0]: []}
    for step in range(60):
        if step == 3:
            ids += [engine.add(Request(p, 12, GREEDY)) for p in ps[1:]]
            out.update({i: [] for i in ids[1:]})
        if step > 3 and not engine.has_work:
            break
        for o in engine.step():
            if o.token is not None:
                out[o.seq_id].append(o.token)
    return [out[i] for i in ids], engine


@pytest.mark.parametrize("sizes", [{}, dict(kv_blocks=24, max_tokens_per_step=9)])
def test_shared_prefix_runs_equal_unshared_ones_and_free_every_block(make_model, sizes):
    model = make_model()
    shared, engine = _run(model, True, **sizes)
    unshared, plain = _run(model, False, **sizes)
    assert shared == unshared == [generate(model, [p], 12, GREEDY)[0] for p in _prompts()]
    assert engine.cache.shared_blocks >= 4 * 5  # the 23-token prefix: 5 full blocks, 4 joiners
    assert plain.cache.shared_blocks == 0
    if not sizes:
        assert engine.cache.allocator.peak_used < plain.cache.allocator.peak_used
    assert engine.cache.allocator.num_used == 0 and engine.cache.registered_blocks == 0


def test_a_prompt_scoring_request_computes_every_position(make_model):
    """echo logprobs need every prompt position's logits: such a request shares nothing."""
    model = make_model()
    p = _prompts()[1]
    engine = Engine(model, block_size_tokens=4)
    engine.generate([Request(p, 2, GREEDY)])
    engine.add(Request(p, 0, echo_logprobs=True))
    while engine.has_work:
        engine.step()
    assert engine.cache.shared_blocks == 0


def test_rolling_back_into_a_shared_block_copies_it():
    cfg = ModelConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
    cache = PagedKVCache(cfg, num_blocks=6, block_size_tokens=4)
    tokens = list(range(10))
    cache.grow(0, 10)
    cache.lengths[0] = 10  # as after a forward over the 10 tokens
    for i, block in enumerate(cache.tables[0]):
        cache.kv[:, block] = float(i + 1)
    cache.register(0, tokens, 10)
    blocks = cache.match_prefix(tokens, 2)
    assert blocks == cache.tables[0][:2] and cache.registered_blocks == 2
    cache.adopt(1, blocks)
    cache.grow(1, 9)
    cache.lengths[1] = 9
    cache.truncate(1, 6)  # back into the second shared block: sequence 1 gets its own copy
    own = cache.tables[1][1]
    assert own != cache.tables[0][1] and cache.tables[1][0] == cache.tables[0][0]
    assert torch.equal(cache.kv[:, own], cache.kv[:, cache.tables[0][1]])
    cache.kv[:, own] = -1.0  # sequence 1 writes on: sequence 0's block is untouched
    assert cache.kv[:, cache.tables[0][1]].eq(2.0).all()
    cache.free(1)
    cache.truncate(0, 5)  # its own block, but registered: others may still adopt it, so copied
    assert cache.registered_blocks == 1 and cache.allocator.num_used == 2
    cache.free(0)
    assert cache.allocator.num_used == 0 and cache.registered_blocks == 0


def test_prefix_sharing_is_a_boolean(make_model):
    with pytest.raises(ValueError, match="prefix_sharing must be true or false, got 'no'"):
        Engine(make_model(), prefix_sharing="no")
