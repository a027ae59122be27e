"""torch.compile without surprises: no graph break in any config variant, no recompilation.

``torch._dynamo.explain`` traces without generating code (seconds); recompilation is checked on
real training steps, counting the frames dynamo compiles. The guards that decide recompilation
are dynamo's, the same whatever the backend, so the step test uses ``aot_eager`` (no C++ build);
the LightningModule's own compile path (inductor) is tested in tests/lit/test_compile_modes.py.
"""

import pytest
import torch

from nextok.model import ModelConfig, Transformer

V, T = 128, 16
VARIANTS = {
    "llama_gqa": dict(n_kv_head=2),
    "gpt2": dict(norm="layernorm", pos="learned", mlp="gelu", bias=True, ffn_multiplier=4.0),
    "qwen_like": dict(n_kv_head=2, qkv_bias=True, qk_norm=True, tie_embeddings=False),
    "relu2_mqa": dict(n_kv_head=1, mlp="relu2"),
    "llama3_rope_scaling": dict(
        n_kv_head=2,
        rope_scaling={
            "type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8,
        },
    ),
    "dropout": dict(dropout=0.1),
}


def build(variant: str, **extra) -> Transformer:
    torch.manual_seed(0)
    return Transformer(
        ModelConfig(
            vocab_size=V,
            block_size=T,
            n_layer=2,
            n_head=4,
            d_model=32,
            **VARIANTS[variant],
            **extra,
        )
    )


def breaks(fn, *args, **kwargs) -> list:
    torch._dynamo.reset()
    out = torch._dynamo.explain(fn)(*args, **kwargs)
    return [str(r.reason) for r in out.break_reasons]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_graph_breaks(variant):
    model = build(variant)
    model.loss_chunk_rows = 12  # several chunks
    x = torch.randint(0, V, (2, T))
    for impl in ("chunked", "plain"):
        model.loss_impl = impl
        assert breaks(model, x, x) == [], f"train forward + {impl} loss"
    model.eval()
    assert breaks(model, x) == [], "logits forward"
    cache = model.make_kv_cache(2)
    model(x[:, :8], kv_cache=cache)
    assert breaks(model, x[:, 8:9], kv_cache=cache, last_only=True) == [], "cached decode step"


def test_no_graph_breaks_with_activation_checkpointing():
    model = build("llama_gqa")
    model.activation_checkpointing = True
    x = torch.randint(0, V, (2, T))
    assert breaks(model, x, x) == []


@pytest.mark.parametrize("loss_impl", ["chunked", "plain"])
def test_no_recompilation_across_training_steps(loss_impl):
    model = build("llama_gqa")
    model.loss_impl, model.loss_chunk_rows = loss_impl, 12
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    compiled = torch.compile(model, backend="aot_eager")
    torch._dynamo.reset()
    frames = []
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randint(0, V, (2, T), generator=g)
        _, loss = compiled(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        frames.append(torch._dynamo.utils.counters["frames"]["ok"])
    assert frames[0] >= 1
    assert frames == [frames[0]] * 4, f"recompiled: frames compiled after each step {frames}"
