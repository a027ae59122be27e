"""Mixture-of-Experts MLPs: routing against a per-token loop, aux losses by hand, causality,
cached decoding, grouped vs fallback matmuls, active parameter counts, checkpointing, compile."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.tiny_models import TINY_MOE, tiny_moe_config
from nextok.model import PRESETS, ModelConfig, Transformer
from nextok.model.moe import MoE, aux_loss, imbalance, load_balancing_loss, update_expert_bias

V = TINY_MOE["vocab_size"]


def naive_moe(layer: MoE, x: torch.Tensor) -> torch.Tensor:
    """The MoE written out token by token: softmax, top-k, renormalise, weighted SwiGLU sum."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(flat)
    for n in range(flat.shape[0]):
        probs = F.softmax(layer.router.weight @ flat[n], dim=-1)
        chosen = torch.topk(probs + layer.expert_bias, layer.top_k).indices
        w = probs[chosen] / (probs[chosen].sum() if layer.norm_topk else 1.0)
        for e, we in zip(chosen.tolist(), w, strict=True):
            gate, up = (layer.w_fc[e] @ flat[n]).chunk(2)
            out[n] += we * (layer.w_proj[e] @ (F.silu(gate) * up))
        if layer.shared is not None:
            out[n] += layer.shared(flat[n])
    return out.view_as(x)


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize(
    "kw",
    [{}, {"moe_norm_topk": False}, {"n_shared_experts": 1}, {"moe_top_k": 1}, {"moe_top_k": 4}],
)
def test_routing_equals_naive_per_token_loop(grouped, kw):
    torch.manual_seed(0)
    layer = Transformer(tiny_moe_config(**kw)).blocks[0].mlp
    assert isinstance(layer, MoE)
    layer.use_grouped_mm = grouped
    with torch.no_grad():
        layer.expert_bias.copy_(torch.tensor([0.0, 0.3, -0.2, 0.1]))  # selection only
    x = torch.randn(3, 7, 32)
    torch.testing.assert_close(layer(x), naive_moe(layer, x), atol=1e-5, rtol=1e-5)


def test_grouped_mm_and_fallback_agree_with_gradients():
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config())
    idx = torch.randint(0, V, (2, 16))
    grads = []
    for grouped in (True, False):
        for m in model.moe_layers():
            m.use_grouped_mm = grouped
        model.zero_grad()
        _, loss = model(idx, idx)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert model.moe_layers()[0]._grouped_ok(torch.zeros(1, dtype=torch.float32)) is False
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_grouped_mm_used_on_cpu_when_aligned():
    layer = Transformer(tiny_moe_config()).blocks[0].mlp
    assert layer._grouped_ok(torch.zeros(1)) is True
    odd = Transformer(tiny_moe_config(moe_ffn_hidden=6)).blocks[0].mlp  # 24-byte rows: not aligned
    assert odd._grouped_ok(torch.zeros(1)) is False
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(odd(x), naive_moe(odd, x), atol=1e-5, rtol=1e-5)


def test_aux_losses_by_hand():
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config(n_layer=1))
    layer = model.moe_layers()[0]
    x = torch.randn(1, 6, 32)
    layer(x)
    logits = (x.reshape(6, 32) @ layer.router.weight.T).double()
    probs = logits.softmax(-1)
    top = probs.topk(2, dim=-1).indices
    counts = torch.zeros(4, dtype=torch.double)
    for row in top:
        for e in row:
            counts[e] += 1
    assert torch.equal(layer.stats.counts, counts.float())
    f = counts / 12  # 6 tokens x top-2
    lb = 4 * sum(f[e] * probs[:, e].mean() for e in range(4))
    z = (torch.logsumexp(logits, -1) ** 2).mean()
    total, lb_got, z_got, _ = aux_loss([layer], aux_coef=0.01, z_coef=0.001)
    assert lb_got.item() == pytest.approx(lb.item(), rel=1e-5)
    assert z_got.item() == pytest.approx(z.item(), rel=1e-5)
    assert total.item() == pytest.approx(0.01 * lb.item() + 0.001 * z.item(), rel=1e-5)
    assert total.requires_grad
    # uniform routing gives exactly 1, a single expert taking everything gives E
    assert load_balancing_loss(torch.ones(4), torch.full((4,), 0.25)).item() == pytest.approx(1.0)
    assert load_balancing_loss(torch.tensor([8.0, 0, 0, 0]), torch.tensor([1.0, 0, 0, 0])) == 4
    assert imbalance(torch.tensor([4.0, 2, 1, 1])).item() == 2.0
    # a global reduction (e.g. over ranks) changes f, not the differentiable P
    total2, lb2, _, _ = aux_loss(
        [layer], 1.0, 0.0, reduce=lambda c: c + torch.tensor([12.0, 0, 0, 0])
    )
    f2 = (counts + torch.tensor([12.0, 0, 0, 0])) / 24
    assert lb2.item() == pytest.approx((4 * (f2 * probs.mean(0)).sum()).item(), rel=1e-5)


def test_aux_loss_gradient_flows_to_router_only():
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config(n_layer=1))
    model(torch.randint(0, V, (2, 8)))
    total = aux_loss(model.moe_layers(), 1.0, 1.0).total
    total.backward()
    layer = model.moe_layers()[0]
    assert layer.router.weight.grad.abs().sum() > 0
    assert layer.w_fc.grad is None and layer.w_proj.grad is None


def test_bias_balancing_moves_selection_towards_idle_experts():
    torch.manual_seed(0)
    layer = Transformer(tiny_moe_config(n_layer=1)).blocks[0].mlp
    x = torch.randn(4, 16, 32)
    with torch.no_grad():
        layer.expert_bias[0] = 0.3  # start unbalanced: every token picks expert 0
    layer(x)
    before = layer.stats.counts.clone()
    assert before[0] == 64
    for _ in range(100):
        layer(x)
        update_expert_bias(layer, layer.stats.counts, rate=0.01)
    assert imbalance(layer.stats.counts) < imbalance(before)
    # the bias chooses experts but never scales their output: with equal choices, equal output
    logits, probs, idx, w = layer.route(x.reshape(-1, 32))
    torch.testing.assert_close(w, probs.gather(-1, idx) / probs.gather(-1, idx).sum(-1, True))


MOE_VARIANTS = [
    {},
    {"first_k_dense": 1},
    {"n_shared_experts": 1},
    {"moe_norm_topk": False},
    {"qk_norm": True, "tie_embeddings": False},
]


@pytest.mark.parametrize("kw", MOE_VARIANTS)
def test_causality_moe_variants(kw):
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config(**kw)).eval()
    idx = torch.randint(0, V, (2, 16))
    logits, _ = model(idx)
    for t in (0, 7, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        logits2, _ = model(changed)
        # other tokens' routing order changes the summation order only
        torch.testing.assert_close(logits2[:, :t], logits[:, :t], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(logits2[:, t], logits[:, t]), "token t must affect position t"


@pytest.mark.parametrize("kw", MOE_VARIANTS[:3])
def test_kv_cached_decode_equals_recompute(kw):
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config(**kw)).eval()
    idx = torch.randint(0, V, (2, 20))
    full, _ = model(idx)
    cache = model.make_kv_cache(batch_size=2, max_seq_len=32)
    steps = [model(idx[:, :12], kv_cache=cache)[0]]
    steps += [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_first_k_dense_and_shared_experts_structure():
    model = Transformer(tiny_moe_config(n_layer=3, first_k_dense=1, n_shared_experts=2))
    assert not isinstance(model.blocks[0].mlp, MoE)
    assert model.blocks[0].mlp.proj.in_features == model.config.ffn_dim
    assert len(model.moe_layers()) == 2
    assert model.moe_layers()[0].shared.proj.in_features == 2 * 16


def test_active_parameters_and_flops():
    cfg = tiny_moe_config(n_layer=3, first_k_dense=1, n_shared_experts=1)
    model = Transformer(cfg)
    expert = 3 * 16 * 32
    total = model.num_parameters()
    assert model.num_parameters(active=True) == total - 2 * (4 - 2) * expert  # 2 MoE layers
    dense = Transformer(ModelConfig(**{**cfg.to_dict(), "mlp": "swiglu"}))
    # the MoE model's matmul weights per token: a dense model's, with MoE layers' MLPs swapped
    # for router + top-2 experts + shared expert
    n_dense = dense.flops_per_token(16) - 12 * 3 * 32 * 16
    mlp_dense = 3 * cfg.ffn_dim * 32
    per_moe = 4 * 32 + 2 * expert + expert
    assert model.flops_per_token(16) - 12 * 3 * 32 * 16 == n_dense + 6 * 2 * (per_moe - mlp_dense)


def test_tiny_moe_matches_tiny_active_parameters():
    tiny, moe = Transformer(PRESETS["tiny"]), Transformer(PRESETS["tiny-moe"])
    router = 4 * 8 * 128
    assert moe.num_parameters(active=True) == tiny.num_parameters() + router
    assert moe.num_parameters() > 2 * tiny.num_parameters()


def test_activation_checkpointing_same_gradients_and_aux():
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config(n_shared_experts=1))
    idx = torch.randint(0, V, (2, 16))
    grads = []
    for ckpt in (False, True):
        model.activation_checkpointing = ckpt
        model.zero_grad()
        _, loss = model(idx, idx)
        total = loss + aux_loss(model.moe_layers(), 0.1, 0.01)[0]
        total.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_meta_init_then_materialize():
    cfg = tiny_moe_config()
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device="cpu")
    model.init_weights()
    layer = model.moe_layers()[0]
    assert torch.equal(layer.expert_bias, torch.zeros(4))
    assert abs(layer.w_proj.std().item() - 0.02 / math.sqrt(4)) < 5e-3
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))[0]).all()


def test_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config())
    idx = torch.randint(0, V, (2, 16))
    ref, _ = model(idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = model(idx)
        _, loss = model(idx, idx)  # the default loss returns no logits
    loss.backward()
    assert (out.float() - ref).abs().max() < 0.1


def test_compile_has_no_graph_breaks():
    torch.manual_seed(0)
    model = Transformer(tiny_moe_config())
    idx = torch.randint(0, V, (2, 16))
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(idx, idx)
    assert explain.graph_break_count == 0, explain.break_reasons
    block = model.blocks[0]
    x = torch.randn(2, 16, 32)
    rope = model.rope(torch.arange(16))
    explain = torch._dynamo.explain(block)(x, rope, None, None)
    assert explain.graph_break_count == 0, explain.break_reasons


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"moe_top_k": 5}, "moe_top_k"),
        ({"n_experts": 0}, "n_experts"),
        ({"first_k_dense": 3}, "first_k_dense"),
        ({"moe_aux_loss_coef": -1.0}, "moe_aux_loss_coef"),
        ({"moe_ffn_hidden": 0}, "moe_ffn_hidden"),
    ],
)
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        tiny_moe_config(**kw)
