"""``nextok-generate quantize=...``: the quantized model generates; what cannot be quantized is
refused in one line."""

from __future__ import annotations

import importlib.util

import pytest

from helpers.checkpoints import write_checkpoint
from helpers.cli import cli, compose

if importlib.util.find_spec("torchao") is None:
    pytest.skip("quantization needs torchao (pip install 'nextok[quant]')", allow_module_level=True)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    model, tok = write_checkpoint(path)
    return path, model, tok


def test_generate_int8_runs_the_quantized_model(ckpt, capsys):
    from nextok.cli.generate import run
    from nextok.generation import SamplingParams, generate_text, quantize_model

    path, model, tok = ckpt
    args = (f"ckpt={path}", "prompt=def", "max_new_tokens=12", "temperature=0", "device=cpu")
    run(compose("generate", *args, "quantize=int8"))
    out, err = capsys.readouterr()
    quantized = quantize_model(write_checkpoint(path.with_name("copy.ckpt"))[0], "int8")
    want = generate_text(quantized, tok, ["def"], 12, SamplingParams(temperature=0))[0]
    assert out == f"def{want}\n"
    assert "(cpu, float32, int8)" in err
    assert "note: quantize=int8 on the CPU dequantizes every weight on every call" in err


def test_int8_note_names_the_fast_route():
    """Only bf16 activations in a compiled step reach aten._weight_int8pack_mm on the CPU."""
    import torch

    from nextok.generation.quantize import speed_note

    assert "dtype=bf16 compile=true" in speed_note("int8", torch.float32, compiled=True)
    assert "dtype=bf16 compile=true" in speed_note("int8", torch.bfloat16)
    assert speed_note("int8", torch.bfloat16, compiled=True) is None
    assert speed_note("int8", torch.float32, device_type="cuda") is None


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_generate_int4_notes_the_slow_fp32_path(tmp_path, capsys, dtype):
    """A vocabulary padded to 320 (a multiple of 16): int4 runs; on fp32 a note says bf16 is fast."""
    import torch

    from nextok.checkpoint.verify import add_checksums
    from nextok.cli.generate import run
    from nextok.model import ModelConfig, Transformer

    path = tmp_path / "v320.ckpt"
    write_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    cfg = ModelConfig(vocab_size=320, block_size=64, n_layer=2, n_head=2, d_model=32)
    saved["state_dict"] = {f"model.{k}": v for k, v in Transformer(cfg).state_dict().items()}
    saved["nextok"]["model_config"] = cfg.to_dict()
    torch.save(add_checksums(saved), path)  # the edited tensors get their own checksums
    args = (f"ckpt={path}", "prompt=def", "max_new_tokens=4", "temperature=0", "device=cpu")
    stats = run(compose("generate", *args, "quantize=int4", f"dtype={dtype}"))
    err = capsys.readouterr().err
    assert stats["tokens"] == 4 and ", int4)" in err
    note = "note: quantize=int4 with fp32 activations runs torchao's slow CPU int4 path"
    assert (note in err) == (dtype == "fp32")


def test_generate_int4_refusal_is_one_line(ckpt, tmp_path):
    path, _, _ = ckpt
    r = cli(
        "nextok-generate",
        f"ckpt={path}",
        "prompt=def ",
        "quantize=int4",
        "device=cpu",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr == (
        "nextok-generate: error: quantize=int4 needs every linear layer's output width to be a "
        "multiple of 16; lm_head has 300 (vocab_size: pad it, e.g. to a multiple of 64); "
        "use quantize=int8\n"
    )


def test_export_refuses_quantize_in_one_line(ckpt, tmp_path):
    path, _, _ = ckpt
    r = cli("nextok-export", f"ckpt={path}", f"out={tmp_path / 'hf'}", "quantize=int8")
    assert r.returncode == 2
    assert r.stderr.startswith("nextok-export: error: quantize= is not offered by nextok-export")
    assert r.stderr.count("\n") == 1 and not (tmp_path / "hf").exists()
