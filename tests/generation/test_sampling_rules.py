"""Sampling rules on hand-made logits: greedy, temperature, top-k, top-p, min-p, penalty, seeds."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from nextok.generation import (
    SamplingParams,
    apply_repetition_penalty,
    make_generator,
    min_p_filter,
    sample_next,
    top_k_filter,
    top_p_filter,
)

PROBS = torch.tensor([[0.05, 0.40, 0.10, 0.25, 0.20]])  # sorted: 1 (.40), 3 (.25), 4 (.20), 2, 0
LOGITS = PROBS.log()


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.isfinite(logits[0]).nonzero().flatten().tolist())


# cumulative mass in rank order: .40, .65, .85, .95, 1.0; p just below / above each boundary
@pytest.mark.parametrize(
    "p,expected",
    [
        (0.10, {1}),
        (0.3999, {1}),
        (0.4001, {1, 3}),
        (0.6499, {1, 3}),
        (0.6501, {1, 3, 4}),
        (0.8499, {1, 3, 4}),
        (0.8501, {1, 3, 4, 2}),
        (0.9499, {1, 3, 4, 2}),
        (0.9501, {0, 1, 2, 3, 4}),
        (1.00, {0, 1, 2, 3, 4}),
    ],
)
def test_top_p_keeps_smallest_prefix_with_mass_at_least_p(p, expected):
    out = top_p_filter(LOGITS.clone(), p)
    assert kept(out) == expected
    # kept tokens keep their logits (renormalisation happens in the softmax)
    assert torch.equal(out[0, sorted(expected)], LOGITS[0, sorted(expected)])


def test_top_p_rows_are_independent():
    logits = torch.stack([LOGITS[0], LOGITS[0].flip(0)])
    out = top_p_filter(logits, 0.6)
    assert kept(out[:1]) == {1, 3}
    assert kept(out[1:]) == {4 - 1, 4 - 3}  # the same tokens, at flipped ids


def test_top_k_and_min_p():
    assert kept(top_k_filter(LOGITS, 2)) == {1, 3}
    assert kept(top_k_filter(LOGITS, 1)) == {1}
    assert kept(top_k_filter(LOGITS, 5)) == {0, 1, 2, 3, 4}
    # min_p=0.45: keep p >= 0.45 * 0.40 = 0.18 -> tokens 1, 3, 4
    assert kept(min_p_filter(LOGITS, 0.45)) == {1, 3, 4}
    assert kept(min_p_filter(LOGITS, 0.55)) == {1, 3}  # threshold 0.22
    assert kept(min_p_filter(LOGITS, 0.7)) == {1}  # threshold 0.28


def test_top_k_1_equals_greedy():
    torch.manual_seed(0)
    logits = torch.randn(16, 50)
    greedy = sample_next(logits, SamplingParams(temperature=0))
    for seed in range(5):
        s = sample_next(logits, SamplingParams(temperature=1.5, top_k=1), make_generator(seed))
        assert torch.equal(s, greedy)
    assert torch.equal(greedy, logits.argmax(-1))


def test_sampling_follows_the_filtered_distribution():
    g = make_generator(0)
    draws = torch.stack(
        [sample_next(LOGITS.expand(1000, -1), SamplingParams(top_p=0.65), g) for _ in range(4)]
    ).flatten()
    counts = torch.bincount(draws, minlength=5).float() / draws.numel()
    assert counts[[0, 2, 4]].sum() == 0  # removed by top-p
    assert abs(counts[1].item() - 0.40 / 0.65) < 0.03  # renormalised over the kept tokens
    assert abs(counts[3].item() - 0.25 / 0.65) < 0.03


def test_temperature_to_zero_approaches_greedy():
    torch.manual_seed(1)
    logits = torch.randn(64, 100)
    greedy = logits.argmax(-1)
    agreement = []
    for t in (2.0, 1.0, 0.3, 0.05, 1e-4):
        s = sample_next(logits, SamplingParams(temperature=t), make_generator(0))
        agreement.append((s == greedy).float().mean().item())
    assert agreement == sorted(agreement)  # monotone towards greedy
    assert agreement[0] < 0.5 and agreement[-1] == 1.0


def test_seeded_sampling_repeats_and_seeds_differ():
    logits = torch.randn(8, 200)
    p = SamplingParams(temperature=1.0, top_p=0.9)
    a = sample_next(logits, p, make_generator(123))
    b = sample_next(logits, p, make_generator(123))
    c = torch.stack([sample_next(logits, p, make_generator(s)) for s in range(5)])
    assert torch.equal(a, b)
    assert len({tuple(r.tolist()) for r in c}) > 1


def test_repetition_penalty():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)
    # greedy with a strong penalty avoids the seen best token
    seen_best = torch.tensor([[False, False, False, True]])
    assert (
        sample_next(
            logits, SamplingParams(temperature=0, repetition_penalty=10.0), seen=seen_best
        ).item()
        == 0
    )


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(temperature=-1), "temperature"),
        (dict(top_k=-2), "top_k"),
        (dict(top_k=1.5), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(min_p=1.0), "min_p"),
        (dict(repetition_penalty=0), "repetition_penalty"),
    ],
)
def test_bad_sampling_options_are_clear_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SamplingParams(**kw)


def test_from_options_picks_the_sampling_fields_of_a_larger_config():
    cfg = OmegaConf.create(dict(ckpt="x.ckpt", temperature=0, top_k=5, top_p=None, seed=1))
    assert SamplingParams.from_options(cfg) == SamplingParams(temperature=0, top_k=5)
    assert SamplingParams.from_options({}) == SamplingParams()
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams.from_options(dict(top_p=2.0, stop=["\n"]))
