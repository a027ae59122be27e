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
