"""Unit tests of the pure-PyTorch model: shapes, causality, GQA, sizes, loss, tying, training."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest
import torch

from nextok.model import PRESETS, ModelConfig, Transformer

VARIANTS = list(
    itertools.product(
        ["rope", "learned"],
        ["rmsnorm", "layernorm"],
        ["swiglu", "gelu", "relu2"],
        [1, 4],
        [True, False],
    )
)


def small(**kw) -> ModelConfig:
    base = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("pos,norm,mlp,n_kv,tied", VARIANTS)
def test_causality_every_variant(pos, norm, mlp, n_kv, tied):
    torch.manual_seed(0)
    cfg = small(
        pos=pos, norm=norm, mlp=mlp, n_kv_head=n_kv, tie_embeddings=tied, bias=norm == "layernorm"
    )
    model = Transformer(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    logits, _ = model(idx)
    assert logits.shape == (2, 16, cfg.vocab_size)
    for t in (0, 7, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % cfg.vocab_size
        logits2, _ = model(changed)
        assert torch.equal(logits2[:, :t], logits[:, :t]), f"position < {t} saw token {t}"
        assert not torch.allclose(logits2[:, t], logits[:, t]), "token t must affect position t"


def _reference_attention(attn, x, cos=None, sin=None):
    """Plain multi-head attention written out by hand (explicit K/V head repetition)."""
    from nextok.model.rope import apply_rope

    B, T, _ = x.shape
    H, KV, D = attn.n_head, attn.n_kv_head, attn.head_dim
    q, k, v = attn.qkv(x).split([H * D, KV * D, KV * D], dim=-1)
    q = q.view(B, T, H, D).transpose(1, 2)
    k = k.view(B, T, KV, D).transpose(1, 2)
    v = v.view(B, T, KV, D).transpose(1, 2)
    if cos is not None:
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.proj(y.transpose(1, 2).reshape(B, T, H * D))


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_attention_matches_handwritten_reference(n_kv):
    torch.manual_seed(0)
    cfg = small(n_kv_head=n_kv)
    model = Transformer(cfg).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 10, cfg.d_model)
    cos, sin = model.rope(torch.arange(10))
    ours, _ = attn(x, (cos, sin), None, None)
    torch.testing.assert_close(ours, _reference_attention(attn, x, cos, sin), atol=1e-5, rtol=1e-5)


def test_gqa_with_all_kv_heads_equals_mha():
    """n_kv_head == n_head is plain MHA: same weights give the same logits as an MHA config."""
    torch.manual_seed(0)
    mha = Transformer(small(n_kv_head=None)).eval()
    gqa = Transformer(small(n_kv_head=4)).eval()
    gqa.load_state_dict(mha.state_dict())
    idx = torch.randint(0, 97, (2, 12))
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0])


def _closed_form_params(c: ModelConfig) -> int:
    d, h, kv, hd, L, V, f = (
        c.d_model,
        c.n_head,
        c.n_kv_head,
        c.head_dim,
        c.n_layer,
        c.vocab_size,
        c.ffn_dim,
    )
    b = int(c.bias)
    norm = d * (2 if c.norm == "layernorm" and c.bias else 1)
    attn = d * (h + 2 * kv) * hd + b * (h + 2 * kv) * hd + h * hd * d + b * d
    width = 2 * f if c.mlp in ("swiglu", "moe") else f
    mlp = d * width + b * width + f * d + b * d
    qk = 2 * (hd * (2 if c.norm == "layernorm" and c.bias else 1)) if c.qk_norm else 0
    per_layer = 2 * norm + attn + mlp + qk
    emb = V * d + (c.block_size * d if c.pos == "learned" else 0)
    head = 0 if c.tie_embeddings else V * d
    total = emb + L * per_layer + norm + head
    if c.mlp == "moe":  # router + routed experts (+ shared) instead of the dense MLP
        h = c.moe_ffn_dim
        moe = d * c.n_experts + (c.n_experts + c.n_shared_experts) * 3 * d * h
        total += (L - c.first_k_dense) * (moe - mlp)
    return total


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_closed_form_presets(name):
    cfg = PRESETS[name]
    with torch.device("meta"):
        model = Transformer(cfg)
    assert model.num_parameters() == _closed_form_params(cfg)
    emb = cfg.vocab_size * cfg.d_model + (
        cfg.block_size * cfg.d_model if cfg.pos == "learned" else 0
    )
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - emb


def test_gpt2_small_is_124m():
    with torch.device("meta"):
        model = Transformer(PRESETS["gpt2-small"])
    # 124.44M with the 50257 vocab; 124.48M with nanoGPT's padded 50304.
    assert 124.4e6 < model.num_parameters() < 124.5e6


@pytest.mark.parametrize("pos,norm,mlp,n_kv,tied", VARIANTS[::5])
def test_parameter_count_closed_form_variants(pos, norm, mlp, n_kv, tied):
    cfg = small(
        pos=pos,
        norm=norm,
        mlp=mlp,
        n_kv_head=n_kv,
        tie_embeddings=tied,
        bias=mlp == "gelu",
        qk_norm=mlp == "relu2",
    )
    assert Transformer(cfg).num_parameters() == _closed_form_params(cfg)


def test_flops_per_token():
    cfg = small()
    model = Transformer(cfg)
    n_matmul = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "emb" not in n)
    n_matmul += cfg.vocab_size * cfg.d_model  # tied LM head still costs a matmul
    assert model.flops_per_token(16) == 6 * n_matmul + 12 * cfg.n_layer * cfg.d_model * 16


def test_loss_equals_manual_cross_entropy_and_ignore_index():
    torch.manual_seed(0)
    model = Transformer(small()).eval()
    idx = torch.randint(0, 97, (3, 16))
    targets = torch.randint(0, 97, (3, 16))
    targets[0, :5] = -100
    _, loss = model(idx, targets)
    logp = model(idx)[0].log_softmax(-1)
    keep = targets != -100
    manual = -logp[keep].gather(-1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, manual)
    assert model(idx)[1] is None


def test_weight_tying_shares_storage():
    tied = Transformer(small(tie_embeddings=True))
    assert tied.lm_head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    untied = Transformer(small(tie_embeddings=False))
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert untied.num_parameters() - tied.num_parameters() == 97 * 32


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(d_model=30, n_head=4), "d_model (30) must be divisible by model.n_head (4)"),
        (dict(n_head=4, n_kv_head=3), "n_head (4) must be divisible by model.n_kv_head (3)"),
        (dict(norm="batchnorm"), "model.norm must be one of"),
        (dict(pos="alibi"), "model.pos must be one of"),
        (dict(mlp="mamba"), "model.mlp must be one of"),
        (dict(vocab_size=0), "model.vocab_size must be a positive integer"),
        (dict(dropout=1.5), "model.dropout"),
        (dict(d_model=12, n_head=4), "RoPE needs an even head dimension"),
    ],
)
def test_config_validation_errors(kw, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        small(**kw)


def test_unknown_preset_and_keys():
    with pytest.raises(ValueError, match="unknown model preset 'gpt5'"):
        ModelConfig.from_preset("gpt5")
    with pytest.raises(ValueError, match=r"unknown model config keys \['n_layers'\]"):
        ModelConfig.from_dict({"n_layers": 2})
    assert ModelConfig.from_preset("tiny", n_layer=2).n_layer == 2


def test_too_long_input_is_a_clear_error():
    model = Transformer(small(block_size=8))
    with pytest.raises(ValueError, match="exceeds the model block_size limit of 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_kv_cache_decode_matches_full_forward():
    torch.manual_seed(0)
    model = Transformer(small(qk_norm=True)).eval()
    idx = torch.randint(0, 97, (2, 20))
    full, _ = model(idx)
    cache = model.make_kv_cache(batch_size=2, max_seq_len=32)
    assert cache.k.shape == (2, 2, 2, 32, 8)  # layers, batch, kv heads (not 4), seq, head_dim
    steps = [model(idx[:, :12], kv_cache=cache)[0]]
    steps += [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.seq_len == 20


def test_left_padded_rows_match_unpadded():
    torch.manual_seed(0)
    model = Transformer(small(pos="learned")).eval()
    a = torch.randint(0, 97, (1, 10))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), a], 1)
    mask = torch.cat([torch.zeros(1, 4), torch.ones(1, 10)], 1)
    ref, _ = model(a)
    out, _ = model(padded, attention_mask=mask)
    torch.testing.assert_close(out[:, 4:], ref, atol=1e-5, rtol=1e-5)


def test_meta_device_init_then_materialize():
    cfg = small()
    with torch.device("meta"):
        model = Transformer(cfg)
    assert model.tok_emb.weight.is_meta
    model.to_empty(device="cpu")
    model.init_weights()
    ref = Transformer(cfg)
    torch.testing.assert_close(model.rope.cos, ref.rope.cos)
    logits, _ = model(torch.zeros(1, 4, dtype=torch.long))
    assert torch.isfinite(logits).all()


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    cfg = small(n_layer=8, d_model=256, n_head=4)
    model = Transformer(cfg)
    std = model.blocks[0].attn.proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 1e-3
    assert abs(model.blocks[0].attn.qkv.weight.std().item() - 0.02) < 1e-3


def test_model_learns_a_repetitive_sequence():
    torch.manual_seed(0)
    cfg = small(vocab_size=64, n_layer=2, d_model=64)
    model = Transformer(cfg)
    pattern = torch.randint(0, 64, (8,))
    seq = pattern.repeat(5)[None, :33]
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * math.log(64), loss.item()


def test_activation_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = Transformer(small())
    idx = torch.randint(0, 97, (2, 16))
    _, loss = model(idx, idx)
    loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing = True
    _, loss2 = model(idx, idx)
    loss2.backward()
    torch.testing.assert_close(loss2, loss)
    for g, p in zip(ref, model.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_model_package_imports_neither_lightning_nor_hydra():
    code = (
        "import sys, nextok.model, nextok.checkpoint; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'hydra')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_torch_compile_tiny_on_cpu():
    """Slow: inductor builds C++ kernels, ~20-40 s on a cold cache (a clean CI machine). Fast
    coverage of what nextok controls: tests/model/test_compile.py (no graph break, no recompile,
    forward and backward traced through AOT autograd with ``aot_eager``)."""
    torch.manual_seed(0)
    model = Transformer(small())
    compiled = torch.compile(model)
    idx = torch.randint(0, 97, (2, 16))
    eager_logits, eager_loss = model(idx, idx)
    logits, loss = compiled(idx, idx)
    torch.testing.assert_close(loss, eager_loss, atol=1e-4, rtol=1e-4)
    loss.backward()
    assert model.tok_emb.weight.grad is not None


def test_compared_with_dropout_training_mode_is_stochastic():
    model = Transformer(small(dropout=0.5)).train()
    idx = torch.randint(0, 97, (2, 16))
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


def test_cross_entropy_uses_float32_logits():
    torch.manual_seed(0)
    model = Transformer(small())
    idx = torch.randint(0, 97, (2, 8))
    _, ref = model(idx, idx)
    _, loss = model.to(torch.bfloat16)(idx, idx)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) < 0.05
