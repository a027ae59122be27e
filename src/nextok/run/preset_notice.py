"""Say which keys of a model preset the user named were changed by the experiment overlay.

``nextok-train model=gpt2_small`` composes the preset, then the default experiment, which pins
``model.block_size: 128`` for two CPU cores: the run trained a 128-token GPT-2 and nothing said
so. The experiment's values stay (they size the run for the machine; ``experiment=`` picks
another overlay), but the start-up summary names every changed key and how to keep the preset's
value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def changed_preset_keys(
    model: DictConfig, preset_file: Path, explicit: list[str]
) -> list[tuple[str, Any, Any]]:
    """``(key, preset value, run value)`` for each key of the preset file whose value in the
    composed ``model`` differs and that the user did not set (``explicit``: ``model.*`` keys)."""
    preset = OmegaConf.to_container(OmegaConf.load(preset_file), resolve=False)
    run = OmegaConf.to_container(model, resolve=True)
    return [
        (key, value, run.get(key))
        for key, value in preset.items()
        if not key.startswith("_") and f"model.{key}" not in explicit and run.get(key) != value
    ]


def preset_notice(
    model: DictConfig, choices: dict[str, Any], conf_dir: str | Path, explicit: list[str]
) -> str | None:
    """The start-up line when the user chose ``model=<preset>`` and an overlay changed it."""
    preset = choices.get("model")
    if "model" not in explicit or not preset:
        return None
    changed = changed_preset_keys(model, Path(conf_dir) / "model" / f"{preset}.yaml", explicit)
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
        f"model={preset}: {overlays or 'the config'} sets {keys}; add {keep} to keep the "
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
    runtime = HydraConfig.get().runtime
    mains = [s.path for s in runtime.config_sources if s.provider == "main" and s.schema == "file"]
    if not mains:
        return None
    return preset_notice(cfg.model, OmegaConf.to_container(runtime.choices), mains[0], explicit)
