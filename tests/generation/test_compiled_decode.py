"""The compiled decode step: one graph for every cache length (no recompilation per step) and the
same greedy tokens as eager, plain and quantized (int8, w8a8)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch._dynamo.utils import counters

from nextok.generation import SamplingParams, compile_decode_step, generate, stream

GREEDY = SamplingParams(temperature=0)
PROMPTS = [[5, 6, 7, 8, 9], [3], [11, 12, 13]]  # left padding: the attention-mask path too


def _compiled_frames_per_step(model, prompts, steps: int) -> list[int]:
    """Frames dynamo compiled so far, read after each decode step."""
    torch._dynamo.reset()
    counters.clear()
    step = compile_decode_step(model, backend="eager")  # dynamo's graph capture, no C++ build
    return [
        counters["frames"]["ok"] for _ in stream(model, prompts, steps, GREEDY, decode_step=step)
    ]


@pytest.mark.parametrize("prompts", [PROMPTS[1:2], PROMPTS], ids=["one row", "padded batch"])
def test_no_recompilation_over_decode_steps(make_model, prompts):
    frames = _compiled_frames_per_step(make_model(), prompts, 24)
    # step 0 comes from the eager prefill; the first cached step compiles, later ones reuse it
    assert frames[0] == 0 and frames[1] >= 1
    assert frames[-1] == frames[1], f"recompiled while decoding: frames per step {frames}"
    assert counters["stats"]["unique_graphs"] == frames[1]


@pytest.mark.parametrize("mode", ["int8", "w8a8"])
def test_compiled_quantized_decode_matches_eager(make_model, mode):
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("needs torchao")
    from nextok.generation import quantize_model

    model = quantize_model(make_model(vocab_size=128), mode)
    frames = _compiled_frames_per_step(model, PROMPTS, 16)
    assert frames[-1] == frames[1]
    step = compile_decode_step(model, backend="eager")
    assert generate(model, PROMPTS, 16, GREEDY, decode_step=step) == generate(
        model, PROMPTS, 16, GREEDY
    )


def test_inductor_compile_of_a_w8a8_model_is_refused_by_the_api(make_model):
    """The refusal lives in compile_decode_step, so the Python API gets it as the CLI does."""
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("needs torchao")
    from nextok.generation import quantize_model

    model = quantize_model(make_model(vocab_size=128), "w8a8")
    with pytest.raises(ValueError, match="^quantize=w8a8 with compile=true is refused"):
        compile_decode_step(model)
    compile_decode_step(quantize_model(make_model(vocab_size=128), "int8"))  # only w8a8


@pytest.mark.slow
def test_inductor_compiled_int8_bf16_step_matches_eager_on_the_gpt2_small_shape():
    """The compiled int8 + bf16 step (inductor rewrites its linears to
    ``aten._weight_int8pack_mm``) gives eager's logits to bf16 rounding at the gpt2-small widths
    (d_model 768, vocab 50257), where the compiled w8a8 step was off by ~3e4; on these prompts
    also eager's argmaxes and greedy tokens (a near-tie elsewhere may flip). 2 of its 12 layers
    keep the compilation to minutes. Teacher-forced: the same tokens go through both steps."""
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("needs torchao")
    from torch._dynamo.utils import counters

    from nextok.generation import quantize_model
    from nextok.model import ModelConfig, Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_preset("gpt2-small", n_layer=2)).to(torch.bfloat16)
    model = quantize_model(model.eval(), "int8")
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 50257, (n,), generator=g).tolist() for n in (32, 20)]
    eager = generate(model, prompts, 12, GREEDY)
    torch._dynamo.reset()
    counters.clear()
    step = compile_decode_step(model)
    assert generate(model, prompts, 12, GREEDY, decode_step=step) == eager
    assert counters["inductor"]["woq_matcher_count"] == 2 * 4 + 1  # every linear, LM head too

    def forced(step_fn) -> torch.Tensor:
        cache = model.make_kv_cache(2, max_seq_len=44)
        idx = torch.zeros((2, 32), dtype=torch.long)
        idx[0], idx[1, 12:] = torch.tensor(prompts[0]), torch.tensor(prompts[1])
        mask = (torch.arange(32) >= torch.tensor([[0], [12]])).long()
        with torch.inference_mode():
            model(idx, kv_cache=cache, attention_mask=mask, last_only=True)
            out = [
                step_fn(torch.tensor([[eager[0][s]], [eager[1][s]]]), kv_cache=cache)[0][:, -1]
                for s in range(11)
            ]
        return torch.stack(out).float()

    want, got = forced(model), forced(step)
    assert (got.argmax(-1) == want.argmax(-1)).all()
    assert (got - want).abs().max() < 0.1  # bf16 rounding; the w8a8 step was off by ~3e4
