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


def test_int8_note_names_the_fast_routes():
    """w8a8, or bf16 activations in a compiled step, reach an int8 kernel on the CPU."""
    import torch

    from nextok.generation.quantize import speed_note

    assert "dtype=bf16 compile=true" in speed_note("int8", torch.float32, compiled=True)
    assert "dtype=bf16 compile=true" in speed_note("int8", torch.bfloat16)
    assert speed_note("int8", torch.bfloat16, compiled=True) is None
    assert speed_note("int8", torch.float32, device_type="cuda") is None
    assert "quantize=w8a8" in speed_note("int8", torch.float32)
    assert speed_note("w8a8", torch.float32) is None


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


def _serve_cfg(path, quantize: str):
    from pathlib import Path

    from omegaconf import OmegaConf

    from nextok.cli._conf import conf_dir

    cfg = OmegaConf.load(Path(conf_dir()) / "serve.yaml")
    cfg.ckpt, cfg.device, cfg.quantize = str(path), "cpu", quantize
    return cfg


def test_serve_w8a8_engine_runs_the_quantized_model(ckpt, capsys):
    """``nextok-serve quantize=w8a8``: the engine's greedy tokens are those of the quantized
    model decoding alone."""
    pytest.importorskip("fastapi")
    from nextok.cli.serve import build
    from nextok.generation import SamplingParams, generate, quantize_model
    from nextok.serving import Request

    path, _, _ = ckpt
    engine = build(_serve_cfg(path, "w8a8")).worker.engine
    assert type(engine.model.lm_head.weight).__name__ == "Int8Tensor"
    quantized = quantize_model(write_checkpoint(path.with_name("copy2.ckpt"))[0], "w8a8")
    greedy = SamplingParams(temperature=0)
    prompts = [[5, 6, 7, 8], [3, 9]]
    want = [generate(quantized, [p], 10, greedy)[0] for p in prompts]
    assert engine.generate([Request(p, 10, greedy) for p in prompts]) == want
    assert capsys.readouterr().err == ""  # w8a8 runs an int8 kernel: no slow-path note


def test_serve_quantize_refusals_are_one_line(ckpt, capsys):
    pytest.importorskip("fastapi")
    from nextok.cli.errors import CliError
    from nextok.cli.serve import build

    path, _, _ = ckpt
    with pytest.raises(CliError, match=r"^quantize=int4 needs .* lm_head has 300 \(vocab_size"):
        build(_serve_cfg(path, "int4"))
    with pytest.raises(CliError, match=r"^quantize='int2' is not one of null, int8, w8a8, int4$"):
        build(_serve_cfg(path, "int2"))
    build(_serve_cfg(path, "int8"))
    assert "nextok-serve: note: quantize=int8 on the CPU dequantizes" in capsys.readouterr().err


def test_generate_refuses_compiled_w8a8_in_one_line(ckpt):
    """inductor's compiled w8a8 step gave wrong logits on the gpt2-small shape: not offered."""
    from nextok.cli.errors import CliError
    from nextok.cli.generate import run

    path, _, _ = ckpt
    args = (f"ckpt={path}", "prompt=def", "max_new_tokens=4", "device=cpu", "compile=true")
    with pytest.raises(CliError, match=r"^quantize=w8a8 with compile=true is refused: .*$"):
        run(compose("generate", *args, "quantize=w8a8"))
