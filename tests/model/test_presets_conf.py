"""The model presets have two spellings: ``ModelConfig.from_preset`` (Python users) and
``conf/model/*.yaml`` (Hydra users). They must describe the same model, field for field."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nextok.model import PRESETS, ModelConfig

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
YAMLS = sorted(CONF.glob("*.yaml"))


def test_every_preset_has_a_config_file_and_back() -> None:
    assert {p.stem.replace("_", "-") for p in YAMLS} == set(PRESETS)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_config_file_equals_preset(path: Path) -> None:
    node = OmegaConf.to_container(OmegaConf.load(path))
    assert node.pop("_target_") == "nextok.model.ModelConfig"
    # Every constructor argument is listed, so `model.<key>=...` overrides work without a `+`.
    missing = sorted({f.name for f in fields(ModelConfig)} - set(node))
    assert not missing, f"{path.name} does not list ModelConfig fields {missing}"
    preset = PRESETS[path.stem.replace("_", "-")]
    # vocab_size: null in the configs means "the tokenizer's size"; the preset names a default.
    if node.get("vocab_size") is None:
        node["vocab_size"] = preset.vocab_size
    built = ModelConfig(**node)
    diff = {
        f.name: (getattr(built, f.name), getattr(preset, f.name))
        for f in fields(ModelConfig)
        if getattr(built, f.name) != getattr(preset, f.name)
    }
    assert not diff, f"{path.name} disagrees with the preset (config, preset): {diff}"
