"""``resume=auto`` continues the run as it was saved: its ``config.yaml`` is the base.

Hydra composes a command's config from ``conf/`` defaults: taken as is, ``nextok-train
hydra.run.dir=R resume=auto`` after a run on ``data=local_text data.data_files=...`` would resume
on the default corpus. So the saved config is the base; what the command sets explicitly changes
it, except what defines the run (the data, the model, the seed and the global batch: changing
them is refused in one line naming the key); keys the command did not set keep the saved value
even where this command's defaults differ. Paths under the saved run dir follow the run dir (a
run dir moved or copied elsewhere resumes there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nextok.checkpoint.resume import ABSENT, MACHINE_LOCAL, leaves, show_value

# what a resume cannot change (a different run: start one, with init_from=<checkpoint>)
FIXED = (
    "data",
    "model",
    "seed",
    "global_batch_size",
    "global_batch_tokens",
    "pad_vocab_multiple_of",
)
FROM_COMMAND = ("resume", "ckpt_path", "print_config", "run_dir")  # never taken from the saved run


def _set(tree: dict, path: str, value: Any) -> None:
    """Set (or with ``ABSENT`` remove) a dotted key; a leaf on the way becomes a node."""
    *parents, last = path.split(".")
    for p in parents:
        if not isinstance(tree.get(p), dict):
            if value is ABSENT:
                return  # already gone with its parent (e.g. a node the command set to null)
            tree[p] = {}
        tree = tree[p]
    if value is ABSENT:
        tree.pop(last, None)
    else:
        tree[last] = value


def _leaf_above(path: str, leaves: dict[str, Any]) -> str | None:
    """The shortest proper prefix of ``path`` that is a leaf in ``leaves`` (e.g. a null node)."""
    parts = path.split(".")
    return next((p for i in range(1, len(parts)) if (p := ".".join(parts[:i])) in leaves), None)


def _relocate(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str) and old and (value == old or value.startswith(old + "/")):
        return new + value[len(old) :]
    return value


def override_keys(overrides: list[str]) -> list[str]:
    """The config keys (or groups) a command's overrides set, Hydra's own left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]
    return [k for k in keys if not k.startswith("hydra.") and k != "hydra"]


def resumed_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """The config a ``resume=auto`` run uses, and the keys whose saved value won over this
    command's defaults; ``cfg`` unchanged when there is no saved config to continue."""
    run_dir = Path(cfg.run_dir)
    saved_path = run_dir / "config.yaml"
    if cfg.get("resume") != "auto" or cfg.get("ckpt_path") or not saved_path.is_file():
        return cfg, []
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file: one line naming it
        raise ValueError(f"{saved_path}: not a readable config ({e}); cannot resume") from e
    if not isinstance(saved, dict):
        raise ValueError(f"{saved_path}: not a config mapping; cannot resume")
    new = OmegaConf.to_container(cfg, resolve=True)
    old_dir = str(saved.get("run_dir") or "")
    flat_saved = {k: _relocate(v, old_dir, str(cfg.run_dir)) for k, v in leaves(saved).items()}
    flat_new = leaves(new)
    explicit = override_keys(overrides)
    result = {k: v for k, v in saved.items() if k not in FROM_COMMAND}
    for key in FROM_COMMAND:
        if key in new:
            result[key] = new[key]
    kept: list[str] = []
    for path in sorted(set(flat_new) | set(flat_saved)):
        value, before = flat_new.get(path, ABSENT), flat_saved.get(path, ABSENT)
        if path.split(".")[0] in FROM_COMMAND:
            continue
        if value == before:
            _set(result, path, value)  # relocated paths
            continue
        if any(path == k or path.startswith(k + ".") for k in explicit):
            if path.split(".")[0] in FIXED and path not in MACHINE_LOCAL:
                raise ValueError(
                    f"{path}={show_value(value)} would change the run in {run_dir}: it was trained "
                    f"with {path}={show_value(before)} ({saved_path}); a resume keeps the data and "
                    "model config: drop that override, or start a new run (init_from=<its "
                    "checkpoint> to start from these weights)"
                )
            _set(result, path, value)
        elif before is ABSENT and (above := _leaf_above(path, flat_saved)) is not None:
            if above not in kept:  # the saved run set this node as a whole (e.g. to null)
                kept.append(above)
        elif before is ABSENT:
            _set(result, path, value)  # a key the saved run did not have yet
        else:
            kept.append(path)
    out = OmegaConf.create(result)
    OmegaConf.set_struct(out, True)
    return out, kept
