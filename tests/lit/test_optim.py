import math

import pytest
import torch

from nextok.model import ModelConfig, Transformer
from nextok.optim import (
    AdamWConfig,
    ScheduleConfig,
    build_adamw,
    make_schedule,
    param_groups,
)


def _ids(params):
    return {id(p) for p in params}


@pytest.mark.parametrize("tie", [True, False])
def test_decay_only_on_matrices(tie):
    model = Transformer(
        ModelConfig(
            vocab_size=64,
            block_size=16,
            n_layer=2,
            n_head=2,
            d_model=32,
            bias=True,
            norm="layernorm",
            tie_embeddings=tie,
        )
    )
    decay, no_decay = param_groups(model, AdamWConfig(weight_decay=0.1))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    d, nd = _ids(decay["params"]), _ids(no_decay["params"])
    assert not d & nd
    # every unique parameter is in exactly one group (tied weights once)
    assert d | nd == _ids(model.parameters())
    assert id(model.tok_emb.weight) in nd
    assert id(model.blocks[0].attn.qkv.weight) in d
    assert id(model.blocks[0].attn.qkv.bias) in nd
    assert id(model.blocks[0].attn_norm.weight) in nd
    assert (id(model.lm_head.weight) in nd) == tie  # tied head is the embedding table
    assert all(p.ndim >= 2 for p in decay["params"])


def test_decay_groups_configurable():
    model = Transformer(ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=32))
    groups = param_groups(model, AdamWConfig(decay_embeddings=True, decay_norms_and_biases=True))
    assert len(groups) == 1 and _ids(groups[0]["params"]) == _ids(model.parameters())


def test_build_adamw_implementation():
    model = Transformer(ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=32))
    opt = build_adamw(model, AdamWConfig(lr=1e-3, implementation="auto"))
    assert opt.defaults["foreach"] is True  # CPU: foreach (fused is chosen on CUDA)
    opt = build_adamw(model, AdamWConfig(implementation="for_loop"))
    assert opt.defaults["foreach"] is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1e-3), "optim.lr"),
        (dict(betas=(0.9, 1.5)), "optim.betas"),
        (dict(implementation="turbo"), "optim.implementation"),
        (dict(weight_decay=-1), "optim.weight_decay"),
    ],
)
def test_adamw_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamWConfig(**kwargs)


def test_cosine_schedule():
    s = make_schedule(ScheduleConfig(name="cosine", warmup_steps=10, min_lr=1e-4), 1e-3, 110)
    lrs = [s(i) * 1e-3 for i in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] < lrs[10]  # linear warm-up
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # halfway down the cosine
    assert lrs[110] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_wsd_and_constant_schedules():
    wsd = make_schedule(
        ScheduleConfig(name="wsd", warmup_steps=5, min_lr=0.0, decay_fraction=0.2), 1.0, 100
    )
    assert wsd(5) == 1.0 and wsd(79) == 1.0  # stable phase
    assert wsd(90) == pytest.approx(0.5)  # linear decay over the last 20 steps
    assert wsd(100) == pytest.approx(0.0)
    sqrt = make_schedule(ScheduleConfig(name="wsd", decay_shape="sqrt"), 1.0, 100)
    assert sqrt(90) == pytest.approx(1 - math.sqrt(0.5))
    const = make_schedule(ScheduleConfig(name="constant", warmup_steps=3), 1.0, None)
    assert const(0) == pytest.approx(0.25) and const(10**6) == 1.0


def test_decaying_schedule_needs_a_length():
    with pytest.raises(ValueError, match="finite run length"):
        make_schedule(ScheduleConfig(name="cosine"), 1e-3, None)
    with pytest.raises(ValueError, match="min_lr"):
        make_schedule(ScheduleConfig(name="cosine", min_lr=1.0), 1e-3, 10)


def test_schedule_state_round_trips_through_lambdalr():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, make_schedule(ScheduleConfig(warmup_steps=2, min_lr=0.1), 1.0, 10)
    )
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(
        opt2, make_schedule(ScheduleConfig(warmup_steps=2, min_lr=0.1), 1.0, 10)
    )
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == sched.get_last_lr()
