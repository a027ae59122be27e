"""The model presets as Hydra config options: ``model=<name>`` composes
:data:`nextok.model.presets.PRESET_ARGS` (the one home of every preset value) over
:class:`~nextok.model.ModelConfig`'s defaults, registered in Hydra's ConfigStore.

Every constructor argument is listed (so ``model.<key>=...`` needs no ``+``), and
``vocab_size`` is null: the run takes the tokenizer's size (padded to ``pad_vocab_multiple_of``).
The option's name is the preset's with ``_`` for ``-`` (``model=gpt2_small`` is ``gpt2-small``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nextok.model import ModelConfig
from nextok.model.presets import PRESET_ARGS

TARGET = "nextok.model.ModelConfig"


def option_name(preset: str) -> str:
    """The ``model=`` option of a preset (``gpt2-small`` -> ``gpt2_small``)."""
    return preset.replace("-", "_")


def preset_node(preset: str) -> dict[str, Any]:
    """The ``model`` node ``model=<option>`` composes: every ModelConfig field, the preset's
    values over the defaults, ``vocab_size`` null."""
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(ModelConfig)
    }
    return {"_target_": TARGET, **defaults, **PRESET_ARGS[preset], "vocab_size": None}


def option_nodes() -> dict[str, dict[str, Any]]:
    """``{option: node}`` for every preset."""
    return {option_name(p): preset_node(p) for p in PRESET_ARGS}


def register_model_presets() -> None:
    """Make every preset a ``model`` group option of any config tree Hydra composes."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for option, node in option_nodes().items():
        store.store(group="model", name=option, node=node, provider="nextok")
