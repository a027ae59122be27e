"""conf/data/*.yaml compose with the real train.yaml and instantiate LMDataModule."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nextok.data import LMDataModule

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_stdlib_yaml_lists_every_constructor_argument():
    # experiments override data keys on top of data=stdlib in struct mode: every key must exist
    cfg = OmegaConf.load(CONF / "data" / "stdlib.yaml")
    params = set(inspect.signature(LMDataModule.__init__).parameters) - {"self"}
    assert set(cfg) - {"_target_"} == params


@pytest.mark.parametrize(
    "name,extra,expect",
    [
        ("stdlib", [], {"source": "stdlib", "streaming": False}),
        ("local_text", ["data.data_files=/tmp/x.txt"], {"source": "text"}),
        ("tinystories", [], {"path": "roneneldan/TinyStories", "val_split": "validation"}),
        (
            "fineweb_edu",
            ["data.tokenizer_path=/tmp/gpt2.json"],
            {"name": "sample-10BT", "streaming": True},
        ),
    ],
)
def test_data_configs_instantiate(tmp_path, name, extra, expect):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={name}", f"run_dir={tmp_path}", *extra])
    dm = instantiate(cfg.data)
    assert isinstance(dm, LMDataModule)
    assert dm.block_size == cfg.model.block_size and dm.run_dir == str(tmp_path)
    for k, v in expect.items():  # the source's keys land on its document source
        assert getattr(dm.corpus, "kind" if k == "source" else k) == v
