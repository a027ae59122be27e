"""``nextok-generate`` end to end: the real console script on a real checkpoint file."""

from __future__ import annotations

import os

import pytest
import torch

from helpers.checkpoints import write_checkpoint
from helpers.cli import cli, compose


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    model, tok = write_checkpoint(path)
    return path, model, tok


def test_generate_streams_text_and_reports_speed(ckpt, tmp_path):
    from nextok.generation import SamplingParams, generate_text, make_generator

    path, model, tok = ckpt
    r = cli(
        "nextok-generate",
        f"ckpt={path}",
        "prompt=def ",
        "max_new_tokens=20",
        "temperature=0.8",
        "top_k=50",
        "top_p=0.9",
        "seed=3",
        "device=cpu",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    want = generate_text(
        model,
        tok,
        ["def "],
        20,
        SamplingParams(temperature=0.8, top_k=50, top_p=0.9),
        generator=make_generator(3),
    )[0]
    assert r.stdout == f"def {want}\n"
    assert "tokens/s" in r.stderr and "cpu, float32" in r.stderr
    assert os.listdir(tmp_path) == []  # no outputs/ or .hydra/ littered into the working dir


def test_prompt_file_and_num_samples(ckpt, tmp_path, capsys):
    from nextok.cli.generate import run

    path, _, _ = ckpt
    pf = tmp_path / "prompts.txt"
    pf.write_text("import \nclass Point:\\n    def \n")
    stats = run(
        compose(
            "generate",
            f"ckpt={path}",
            f"prompt_file={pf}",
            "num_samples=2",
            "max_new_tokens=8",
            "seed=0",
        )
    )
    out = capsys.readouterr().out
    assert out.count("--- prompt ") == 4
    assert "--- prompt 2/2, sample 2/2 ---\nclass Point:\n    def " in out
    assert 0 < stats["tokens"] <= 32 and stats["tokens_per_s"] > 0


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    r = cli("nextok-generate", "ckpt=/nope/missing.ckpt", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == "nextok-generate: error: checkpoint not found: /nope/missing.ckpt\n"


@pytest.mark.parametrize(
    "args,msg",
    [
        ([], "ckpt=PATH is required"),
        (["max_new_tokens=-1"], "max_new_tokens must be a non-negative integer"),
        (["temperature=-1"], "temperature must be >= 0"),
        (["top_p=2.0"], "top_p must be in (0, 1]"),
        (["dtype=fp8"], "dtype='fp8' is not one of"),
        (["device=tpu"], "device='tpu' is not a device"),
        (["num_samples=0"], "num_samples must be a positive integer"),
        (["prompt_file=/nope.txt"], "prompt_file=/nope.txt not found"),
        (["prompt=a", "prompt_file=/nope.txt"], "not both"),
    ],
)
def test_bad_input_is_a_clear_error(ckpt, args, msg):
    from nextok.cli.errors import CliError
    from nextok.cli.generate import run

    path, _, _ = ckpt
    if "ckpt=PATH" not in msg:
        args = [f"ckpt={path}", *args]
    with pytest.raises(CliError) as err:
        run(compose("generate", *args))
    assert msg in str(err.value) and "\n" not in str(err.value)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    from nextok.cli.errors import CliError
    from nextok.cli.generate import run

    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CliError, match=f"cannot load checkpoint {bad}"):
        run(compose("generate", f"ckpt={bad}"))
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(CliError, match="is not a nextok checkpoint"):
        run(compose("generate", f"ckpt={bad}"))


def test_bf16_on_cpu(ckpt, capsys):
    from nextok.cli.generate import run

    path, _, _ = ckpt
    stats = run(
        compose(
            "generate",
            f"ckpt={path}",
            'prompt="import "',
            "max_new_tokens=6",
            "dtype=bf16",
            "device=cpu",
        )
    )
    captured = capsys.readouterr()
    assert captured.out.startswith("import ") and "cpu, bfloat16" in captured.err
    assert stats["tokens"] > 0


@pytest.mark.slow
def test_compiled_decode_step_gives_the_same_text(ckpt, capsys):
    """Slow: a cold torch.compile (inductor, C++ build) takes ~20-40 s on CPU."""
    from nextok.cli.generate import run

    path, _, _ = ckpt
    args = (f"ckpt={path}", 'prompt="def "', "max_new_tokens=12", "temperature=0")
    run(compose("generate", *args))
    eager = capsys.readouterr().out
    run(compose("generate", *args, "compile=true"))
    captured = capsys.readouterr()
    assert captured.out == eager and "compiled the decode step" in captured.err


def test_escaped_newlines_in_prompt_and_stop_strings(ckpt, capsys):
    from nextok.cli.generate import run

    path, _, _ = ckpt
    args = (
        f"ckpt={path}",
        r'prompt="class Point:\n    def "',
        "max_new_tokens=24",
        "temperature=0",
    )
    run(compose("generate", *args))
    full = capsys.readouterr().out
    assert full.startswith("class Point:\n    def ")
    new = full[len("class Point:\n    def ") : -1]
    stop = new[8:11]
    run(compose("generate", *args, f"stop=[{stop!r}]"))
    assert capsys.readouterr().out == "class Point:\n    def " + new[: new.index(stop)] + "\n"
