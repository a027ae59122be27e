"""``model=<preset>`` composes nextok.model.presets (their one home) through Hydra's ConfigStore."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.cli import cli, compose
from nextok.cli._conf import conf_dir
from nextok.model import PRESETS, ModelConfig
from nextok.run.model_presets import option_name, preset_node


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_model_option_composes_the_preset(preset):
    """Every ModelConfig field is listed (``model.<key>=`` needs no ``+``), the vocabulary is the
    tokenizer's (null), and the rest builds exactly the preset."""
    cfg = compose("train", "run_dir=/tmp/unused", f"model={option_name(preset)}", "~experiment")
    node = OmegaConf.to_container(cfg.model)
    assert node == preset_node(preset)
    assert node.pop("_target_") == "nextok.model.ModelConfig" and node["vocab_size"] is None
    assert ModelConfig(**{**node, "vocab_size": PRESETS[preset].vocab_size}) == PRESETS[preset]


def test_gpt2_small_values_and_the_one_home():
    """The values themselves (GPT-2 124M), and no second spelling under conf/model/."""
    model = compose("train", "run_dir=/tmp/unused", "model=gpt2_small", "~experiment").model
    got = {k: model[k] for k in ("n_layer", "n_head", "d_model", "block_size", "norm", "pos")}
    assert got == dict(
        n_layer=12, n_head=12, d_model=768, block_size=1024, norm="layernorm", pos="learned"
    )
    assert model.bias is True and model.tie_embeddings is True and model.ffn_multiplier == 4.0
    assert not list((Path(conf_dir()) / "model").glob("*.yaml"))


def test_cfg_job_shows_the_preset(tmp_path):
    proc = cli("nextok-train", "--cfg", "job", "model=llama_1b", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "n_layer: 16" in text and "ffn_hidden: 8192" in text and "rope_theta: 500000.0" in text


def test_an_unknown_option_lists_the_presets(tmp_path):
    proc = cli("nextok-train", "--cfg", "job", "model=nope", cwd=tmp_path)
    assert proc.returncode != 0
    assert "gpt2_small" in proc.stderr + proc.stdout and "tiny_moe" in proc.stderr + proc.stdout
