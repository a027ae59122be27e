"""``nextok-generate`` end to end: the real console script on a real checkpoint file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from nextok.checkpoint.verify import add_checksums
from nextok.model import ModelConfig, Transformer

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n",
    "class Point:\n    def __init__(self, x):\n        self.x = x\n",
] * 30


def _tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def write_checkpoint(path: Path, block_size: int = 64) -> tuple[Transformer, Tokenizer]:
    """A checkpoint following the contract in nextok.checkpoint (as nextok-train writes it)."""
    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.get_vocab_size(), block_size=block_size, n_layer=2, n_head=2, d_model=32
    )
    model = Transformer(cfg).eval()
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "nextok": {
            "model_config": cfg.to_dict(),
            "tokenizer_json": tok.to_str(),
            "tokens_seen": 0,
        },
    }
    torch.save(add_checksums(checkpoint), path)
    return model, tok


def cli() -> list[str]:
    exe = shutil.which("nextok-generate")
    return [exe] if exe else [sys.executable, "-m", "nextok.cli.generate"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [*cli(), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    model, tok = write_checkpoint(path)
    return path, model, tok


def test_generate_streams_text_and_reports_speed(ckpt, tmp_path):
    from nextok.generation import SamplingParams, generate_text, make_generator

    path, model, tok = ckpt
    r = run_cli(
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


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from nextok.cli._conf import conf_dir

    with initialize_config_dir(conf_dir(), version_base="1.3"):
        return hydra_compose("generate", overrides=list(overrides))


def test_prompt_file_and_num_samples(ckpt, tmp_path, capsys):
    from nextok.cli.generate import run

    path, _, _ = ckpt
    pf = tmp_path / "prompts.txt"
    pf.write_text("import \nclass Point:\\n    def \n")
    stats = run(
        compose(f"ckpt={path}", f"prompt_file={pf}", "num_samples=2", "max_new_tokens=8", "seed=0")
    )
    out = capsys.readouterr().out
    assert out.count("--- prompt ") == 4
    assert "--- prompt 2/2, sample 2/2 ---\nclass Point:\n    def " in out
    assert 0 < stats["tokens"] <= 32 and stats["tokens_per_s"] > 0


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    r = run_cli("ckpt=/nope/missing.ckpt", cwd=tmp_path)
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
        run(compose(*args))
    assert msg in str(err.value) and "\n" not in str(err.value)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    from nextok.cli.errors import CliError
    from nextok.cli.generate import run

    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CliError, match=f"cannot load checkpoint {bad}"):
        run(compose(f"ckpt={bad}"))
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(CliError, match="is not a nextok checkpoint"):
        run(compose(f"ckpt={bad}"))


def test_bf16_on_cpu(ckpt, capsys):
    from nextok.cli.generate import run

    path, _, _ = ckpt
    stats = run(
        compose(f"ckpt={path}", 'prompt="import "', "max_new_tokens=6", "dtype=bf16", "device=cpu")
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
    run(compose(*args))
    eager = capsys.readouterr().out
    run(compose(*args, "compile=true"))
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
    run(compose(*args))
    full = capsys.readouterr().out
    assert full.startswith("class Point:\n    def ")
    new = full[len("class Point:\n    def ") : -1]
    stop = new[8:11]
    run(compose(*args, f"stop=[{stop!r}]"))
    assert capsys.readouterr().out == "class Point:\n    def " + new[: new.index(stop)] + "\n"
