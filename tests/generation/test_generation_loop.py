"""The prefill + decode loop: cache == no cache, batched == alone, stops, limits, streaming."""

from __future__ import annotations

import itertools

import pytest
import torch

from nextok.generation import SamplingParams, generate, make_generator, stream

GREEDY = SamplingParams(temperature=0)
SAMPLE = SamplingParams(temperature=1.0)

PROMPTS = [[5, 6, 7, 8, 9], [11, 12], [20, 21, 22, 23, 24, 25, 26, 27, 28], [3]]

VARIANTS = list(
    itertools.product(
        ["rope", "learned"],
        ["rmsnorm", "layernorm"],
        ["swiglu", "gelu", "relu2"],
        [4, 2, 1],
        [False, True],
    )
)


@pytest.mark.parametrize("pos,norm,mlp,n_kv,qk_norm", VARIANTS)
def test_cached_decode_equals_full_recompute_every_variant(
    make_model, pos, norm, mlp, n_kv, qk_norm
):
    """Token for token (fp32): KV-cached decode == re-running the whole sequence each step.

    Greedy on a random model soon repeats itself, so seeded sampling (per-row generators) is
    compared as well: it walks through many different tokens and positions.
    """
    model = make_model(
        pos=pos,
        norm=norm,
        mlp=mlp,
        n_kv_head=n_kv,
        qk_norm=qk_norm,
        bias=norm == "layernorm",
        tie_embeddings=mlp != "gelu",
    )
    greedy = generate(model, PROMPTS, 12, GREEDY)
    assert generate(model, PROMPTS, 12, GREEDY, use_cache=False) == greedy
    assert all(len(row) == 12 for row in greedy)

    def sampled(use_cache):
        gens = [make_generator(i) for i in range(len(PROMPTS))]
        return generate(model, PROMPTS, 12, SAMPLE, generator=gens, use_cache=use_cache)

    cached = sampled(True)
    assert sampled(False) == cached
    assert min(len(set(row)) for row in cached) > 4  # many different tokens were exercised


@pytest.mark.parametrize("pos,n_kv", [("rope", 2), ("learned", 4), ("rope", 1)])
def test_batched_greedy_equals_one_by_one(make_model, pos, n_kv):
    model = make_model(pos=pos, n_kv_head=n_kv)
    batched = generate(model, PROMPTS, 20, GREEDY)
    assert [generate(model, [p], 20, GREEDY)[0] for p in PROMPTS] == batched


def test_batched_sampling_equals_one_by_one_with_per_row_generators(make_model):
    model = make_model()
    opts = SamplingParams(temperature=0.9, top_k=40, top_p=0.95, min_p=0.01, repetition_penalty=1.3)
    batched = generate(
        model, PROMPTS, 30, opts, generator=[make_generator(100 + i) for i in range(len(PROMPTS))]
    )
    alone = [
        generate(model, [p], 30, opts, generator=[make_generator(100 + i)])[0]
        for i, p in enumerate(PROMPTS)
    ]
    assert batched == alone
    again = generate(
        model, PROMPTS, 30, opts, generator=[make_generator(100 + i) for i in range(len(PROMPTS))]
    )
    assert again == batched  # seeded runs repeat
    other = generate(model, PROMPTS, 30, opts, generator=make_generator(7))
    assert other != batched


def test_seeded_single_generator_repeats(make_model):
    model = make_model()
    a = generate(model, PROMPTS, 20, SAMPLE, generator=make_generator(3))
    b = generate(model, PROMPTS, 20, SAMPLE, generator=make_generator(3))
    assert a == b


def test_kv_cache_layout_and_rope_positions_continue(make_model):
    """Preallocated per layer, n_kv_head heads only, model dtype; decode logits == full forward."""
    model = make_model(n_kv_head=2, block_size=40)
    cache = model.make_kv_cache(3, max_seq_len=30)
    c = model.config
    assert cache.k.shape == (c.n_layer, 3, 2, 30, c.head_dim) and cache.k.dtype == torch.float32
    assert model.to(torch.bfloat16).make_kv_cache(1).k.dtype == torch.bfloat16
    model.float()
    seq = torch.randint(0, c.vocab_size, (3, 30))
    full, _ = model(seq)
    with torch.no_grad():
        logits, _ = model(seq[:, :10], kv_cache=cache)
        assert cache.seq_len == 10
        torch.testing.assert_close(logits, full[:, :10], atol=1e-5, rtol=1e-5)
        for t in range(10, 30):
            logits, _ = model(seq[:, t : t + 1], kv_cache=cache)
            torch.testing.assert_close(logits[:, 0], full[:, t], atol=1e-5, rtol=1e-5)
    assert cache.seq_len == 30


def _sampled(model, n, **kw):
    gens = [make_generator(i) for i in range(len(PROMPTS))]
    return generate(model, PROMPTS, n, SAMPLE, generator=gens, **kw)


def test_eos_ends_a_row_and_is_not_returned(make_model):
    model = make_model()
    ref = _sampled(model, 16)
    eos = ref[0][5]
    out = _sampled(model, 16, eos_id=eos)
    assert out[0] == ref[0][: ref[0].index(eos)] and len(out[0]) <= 5
    for want, got in zip(ref[1:], out[1:]):  # other rows stop at their own first eos, if any
        assert got == (want[: want.index(eos)] if eos in want else want)


def test_stop_sequences_and_stop_fn(make_model):
    model = make_model()
    ref = _sampled(model, 16)[0]
    tail = ref[6:8]
    first = next(i for i in range(len(ref)) if ref[i - 1 : i + 1] == tail)
    out = _sampled(model, 16, stop=[[999], tail])[0]
    assert out == ref[: first + 1]  # the stop sequence itself is kept
    out = _sampled(model, 16, stop_fn=lambda b, ids: len(ids) == 3 + b)
    assert [len(row) for row in out] == [3, 4, 5, 6]


def test_stream_yields_tokens_as_they_come(make_model):
    model = make_model()
    steps = list(stream(model, PROMPTS[:2], 6, GREEDY, eos_id=None))
    assert len(steps) == 6 and all(len(s) == 2 for s in steps)
    assert [list(col) for col in zip(*steps)] == generate(model, PROMPTS[:2], 6, GREEDY)
    seen = []
    generate(model, PROMPTS[:2], 4, GREEDY, on_token=seen.append)
    assert len(seen) == 4


def test_generation_restores_training_mode(make_model):
    model = make_model().train()
    generate(model, [[1, 2]], 3, GREEDY)
    assert model.training


def test_block_size_limit_is_a_clear_error(make_model):
    model = make_model(block_size=16)
    assert len(generate(model, [[1] * 10], 6, GREEDY)[0]) == 6  # exactly fills block_size
    with pytest.raises(
        ValueError, match=r"max_new_tokens=7 exceeds model.block_size=16; set max_new_tokens <= 6"
    ):
        generate(model, [[1] * 10, [2]], 7)
    with pytest.raises(ValueError, match="prompt of 16 tokens leaves no room"):
        generate(model, [[1] * 16], 1)


@pytest.mark.parametrize(
    "prompts,n,msg",
    [
        ([[1], []], 2, "prompt 1 is empty"),
        ([[1, 500]], 2, "token id 500 is outside the model vocabulary"),
        ([[1]], -1, "max_new_tokens"),
    ],
)
def test_bad_input_is_a_clear_error(make_model, prompts, n, msg):
    with pytest.raises(ValueError, match=msg):
        generate(make_model(), prompts, n)


def test_sampling_is_passed_whole(make_model):
    """The options travel as one SamplingParams; loose option arguments are not accepted."""
    model = make_model()
    with pytest.raises(TypeError, match="sampling must be a SamplingParams, got dict"):
        generate(model, PROMPTS, 2, {"temperature": 0})
    with pytest.raises(TypeError, match="temperature"):
        generate(model, PROMPTS, 2, temperature=0)
    assert generate(model, PROMPTS, 4, sampling=GREEDY) == generate(model, PROMPTS, 4, GREEDY)


def test_compiled_decode_step_matches_eager(make_model):
    pytest.importorskip("torch._inductor")
    from nextok.generation import compile_decode_step

    model = make_model()
    step = compile_decode_step(model, backend="eager")  # the dynamo graph path, without C++ build
    assert generate(model, PROMPTS, 12, GREEDY, decode_step=step) == generate(
        model, PROMPTS, 12, GREEDY
    )


def test_vocab_limit_never_emits_padded_ids(make_model):
    model = make_model()
    with torch.no_grad():  # make the padded ids (>= 90) by far the most likely
        model.lm_head.weight[90:] *= 50
    assert max(t for row in generate(model, PROMPTS, 8, GREEDY) for t in row) >= 90
    out = generate(model, PROMPTS, 8, SAMPLE, vocab_limit=90, generator=make_generator(0))
    assert max(t for row in out for t in row) < 90
