"""Refusals of Hugging Face folders name the file's field, and every command they suggest works
(run here as the user would)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer, models, processors

from helpers.tiny_models import logits, random_hf_model
from helpers.tokenizers_bos import bos_tokenizer
from nextok.checkpoint import load_checkpoint
from nextok.hf import import_hf
from nextok.hf.families import QWEN3_HEAD_DIM
from nextok.run.init_from import load_source

transformers = pytest.importorskip("transformers")

BOS, EOS = "<s>", "</s>"
SMALL = dict(
    vocab_size=320,  # >= the tokenizer's 258 tokens
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
MODULE = {"generate": "nextok.cli.generate", "export": "nextok.cli.export"}


def _tokenizer(template: bool) -> Tokenizer:
    """A byte-level BPE with <s> and </s> but no <|endoftext|>."""
    return bos_tokenizer(BOS, EOS, 128, template)


def _folder(tmp_path, tok_config: dict, template: bool = False):
    d = tmp_path / "hf"
    random_hf_model(transformers.LlamaConfig, **SMALL).save_pretrained(d)
    _tokenizer(template).save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return d


def _cli(cmd: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", MODULE[cmd], *args], capture_output=True, text=True, timeout=300
    )


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]


SPECIAL_CASES = pytest.mark.parametrize(
    ("tok_config", "template", "needle", "fix"),
    [
        ({}, False, "set data.eos_token='TOKEN'", f"data.eos_token='{EOS}'"),
        (
            {"eos_token": EOS, "bos_token": BOS, "add_bos_token": True},
            False,
            "set data.add_bos=true or false",
            "data.add_bos=false",
        ),
    ],
    ids=["no-eos", "bos-disagreement"],
)


@SPECIAL_CASES
def test_special_token_fixes_reach_every_loader(tmp_path, tok_config, template, needle, fix):
    """nextok-eval (load_checkpoint with its data.* keys) and init_from (load_source)."""
    d = _folder(tmp_path, tok_config, template)
    key, value = fix.split("=")
    value = {"false": False, "true": True}.get(value, value.strip("'"))
    with pytest.raises(ValueError, match=needle.split("=")[0]):
        load_checkpoint(d)
    kw = {"eos_token": value} if key == "data.eos_token" else {"add_bos": value}
    assert load_checkpoint(d, **kw).special is not None
    with pytest.raises(ValueError, match=needle.split("=")[0]):
        load_source(str(d), {})
    load_source(str(d), {}, **({"eos": value} if "eos_token" in kw else {"add_bos": value}))


@pytest.mark.slow  # 4 CLI runs per case, ~30 s
@SPECIAL_CASES
def test_special_token_refusals_suggest_keys_that_work(tmp_path, tok_config, template, needle, fix):
    d = _folder(tmp_path, tok_config, template)
    gen = ("generate", f"ckpt={d}", "prompt=hello", "max_new_tokens=3", "device=cpu")
    _one_line_error(_cli(*gen), needle)
    r = _cli(*gen, fix)
    assert r.returncode == 0, r.stderr[-2000:]
    export = ("export", f"ckpt={d}", f"out={tmp_path}/out")
    _one_line_error(_cli(*export), needle)
    r = _cli(*export, fix)
    assert r.returncode == 0, r.stderr[-2000:]


def test_sliding_window_zero_is_one_line_without_a_fix(tmp_path):
    d = tmp_path / "m"
    random_hf_model(transformers.MistralConfig, **SMALL, sliding_window=None).save_pretrained(d)
    c = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**c, "sliding_window": 0}))
    with pytest.raises(ValueError, match=r"sliding_window=0 is not supported: expected a posi"):
        import_hf(d)


def test_mixtral_router_jitter_is_training_only(tmp_path):
    ref = random_hf_model(
        transformers.MixtralConfig,
        **{**SMALL, "intermediate_size": 16},
        num_local_experts=4,
        num_experts_per_tok=2,
        router_jitter_noise=0.1,
    )
    ref.save_pretrained(tmp_path / "m")
    idx = torch.randint(0, 320, (1, 12))
    got = import_hf(tmp_path / "m", dropout=0.0)  # as generate, eval and export load it
    assert (logits(got, idx) - logits(ref, idx)).abs().max() < 1e-4  # eval: no noise either way
    with pytest.raises(
        ValueError, match=r"router_jitter_noise=0.1 is not supported: .*model\.dropout"
    ):
        load_source(str(tmp_path / "m"), {})  # init_from: training would differ
    assert load_source(str(tmp_path / "m"), {"dropout": 0.0}).config.mlp == "moe"


def test_llama3_factor_refusal_names_the_files_field(tmp_path):
    d = tmp_path / "m"
    scaling = {
        "rope_type": "llama3",
        "rope_theta": 5e5,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 1.0,
        "original_max_position_embeddings": 16,
    }
    random_hf_model(transformers.LlamaConfig, **SMALL).save_pretrained(d)
    c = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**c, "rope_parameters": scaling}))
    with pytest.raises(ValueError, match=r"rope_parameters.high_freq_factor=1.0 is not supported"):
        import_hf(d)


def test_qwen3_without_head_dim_takes_transformers_default(tmp_path):
    assert transformers.Qwen3Config().head_dim == QWEN3_HEAD_DIM
    ref = random_hf_model(transformers.Qwen3Config, **{**SMALL, "head_dim": QWEN3_HEAD_DIM})
    ref.save_pretrained(tmp_path / "m")
    f = tmp_path / "m" / "config.json"
    c = json.loads(f.read_text())
    del c["head_dim"]
    f.write_text(json.dumps(c))
    assert transformers.AutoConfig.from_pretrained(tmp_path / "m").head_dim == QWEN3_HEAD_DIM
    idx = torch.randint(0, 320, (1, 12))
    assert (logits(import_hf(tmp_path / "m"), idx) - logits(ref, idx)).abs().max() < 1e-4


@pytest.mark.parametrize("template", [False, True])
def test_a_tokenizer_that_drops_text_is_one_line(tmp_path, template):
    d = tmp_path / "hf"
    random_hf_model(transformers.LlamaConfig, **SMALL).save_pretrained(d)
    tok = Tokenizer(models.BPE({BOS: 0, EOS: 1, "b": 2}, []))  # no unknown token: "a" -> []
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", special_tokens=[(BOS, 0)]
        )
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS, "bos_token": BOS}))
    with pytest.raises(ValueError, match=r"encodes 'a' to no token .*dropped silently") as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value)


@pytest.mark.slow  # 3 nextok-train runs (one trains 1 step) and one nextok-eval, ~60 s
def test_train_and_eval_take_the_suggested_fixes(tmp_path):
    """A Mixtral folder with router jitter and a tokenizer that names no EOS: each refusal names
    its fix, and nextok-train init_from / nextok-eval work once given."""
    d = tmp_path / "hf"
    random_hf_model(
        transformers.MixtralConfig,
        **{**SMALL, "intermediate_size": 16},
        num_local_experts=4,
        num_experts_per_tok=2,
        router_jitter_noise=0.1,
    ).save_pretrained(d)
    _tokenizer(False).save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text("{}")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n" * 50 + "def foo bar\n" * 50)
    data = ["data=local_text", f"data.data_files={corpus}", "data.document_unit=line"]
    data.append("data.val_fraction=0.2")
    train = [
        sys.executable,
        "-m",
        "nextok.cli.train",
        f"init_from={d}",
        *data,
        "data.batch_size=2",
        "model.block_size=16",
        "trainer.max_steps=1",
        "callbacks.sampling=null",
        "tasks=[]",
        f"hydra.run.dir={tmp_path}/run",
    ]

    def run(*args):
        return subprocess.run([*args], capture_output=True, text=True, timeout=300)

    _one_line_error(run(*train), "router_jitter_noise=0.1", "model.dropout=0.0")
    _one_line_error(run(*train, "model.dropout=0.0"), "set data.eos_token='TOKEN'")
    r = run(*train, "model.dropout=0.0", f"data.eos_token='{EOS}'")
    assert r.returncode == 0, r.stderr[-3000:]
    ev = [sys.executable, "-m", "nextok.cli.evaluate", f"ckpt={d}", "data_from=config", *data]
    _one_line_error(run(*ev, "tasks=[]"), "set data.eos_token='TOKEN'")
    r = run(*ev, "tasks=[]", f"data.eos_token='{EOS}'", "json=true")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["loss"] > 0


def test_a_tokenizer_larger_than_the_embedding_is_one_line(tmp_path):
    d = tmp_path / "hf"
    random_hf_model(transformers.LlamaConfig, **{**SMALL, "vocab_size": 200}).save_pretrained(d)
    _tokenizer(False).save(str(d / "tokenizer.json"))  # 258 tokens
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    with pytest.raises(ValueError, match=r"has 258 tokens but config.json vocab_size=200"):
        load_checkpoint(d)
