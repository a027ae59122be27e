"""Say which keys of a model preset the user named were changed by the experiment overlay.

``nextok-train model=gpt2_small`` composes the preset, then the default experiment, which pins
``model.block_size: 128`` for two CPU cores: the run trains a 128-token GPT-2, which this
notice says. The experiment's values stay (they size the run for the machine; ``experiment=`` picks
another overlay), but the start-up summary names every changed key and how to keep the preset's
value.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from nextok.run.model_presets import option_nodes


def changed_preset_keys(
    model: DictConfig, preset: dict[str, Any], explicit: list[str]
) -> list[tuple[str, Any, Any]]:
    """``(key, preset value, run value)`` for each key of the ``preset`` node whose value in the
    composed ``model`` differs and that the user did not set (``explicit``: ``model.*`` keys)."""
    run = OmegaConf.to_container(model, resolve=True)
    return [
        (key, value, run.get(key))
        for key, value in preset.items()
        if not key.startswith("_") and f"model.{key}" not in explicit and run.get(key) != value
    ]


def preset_notice(model: DictConfig, choices: dict[str, Any], explicit: list[str]) -> str | None:
    """The start-up line when the user chose ``model=<preset>`` and an overlay changed it."""
    option = choices.get("model")
    presets = option_nodes()
    if "model" not in explicit or option not in presets:
        return None
    changed = changed_preset_keys(model, presets[option], explicit)
    if not changed:
        return None
    overlays = ", ".join(
        f"{group}={choices[group]}" for group in ("experiment", "debug") if choices.get(group)
    )
    keys = ", ".join(
        f"model.{k}={_yaml(run)} (preset: {_yaml(value)})" for k, value, run in changed
    )
    keep = " ".join(f"model.{k}={_yaml(value)}" for k, value, _ in changed)
    return (
        f"model={option}: {overlays or 'the config'} sets {keys}; add {keep} to keep the "
        "preset's values"
    )


def _yaml(value: Any) -> str:
    """A value as it is written on the command line (null, true, 1024)."""
    return OmegaConf.to_yaml({"v": value}).strip()[3:]


def run_preset_notice(cfg: DictConfig, explicit: list[str]) -> str | None:
    """:func:`preset_notice` for the running Hydra app (None outside one: tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choices = OmegaConf.to_container(HydraConfig.get().runtime.choices)
    return preset_notice(cfg.model, choices, explicit)
