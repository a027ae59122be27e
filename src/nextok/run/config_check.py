"""Check a composed config before any work: value types against the constructors they feed.

Hydra accepts ``optim.lr=fast`` (a string) and ``trainer.max_steps=abc``; unchecked, the run would
die deep inside PyTorch or Lightning with a ``TypeError`` naming no key, and ``model.n_layer=abc``
would fail only after the tokenizer has trained. Every ``_target_`` node's keys are constructor
arguments, so their annotations say what each value must be; a mismatch is one line naming the
key. Annotations this checker does not understand are not checked (never a false refusal).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nextok.console import say
from nextok.evals.stdlib_task import check_task_specs
from nextok.lit.lightning_private import locate
from nextok.model import ModelConfig
from nextok.run.config import merged
from nextok.run.value_ranges import check_value_ranges

# top-level nodes built from _target_ (callbacks and loggers are dicts of such nodes)
NODES = ("model", "data", "module", "optim", "schedule", "trainer")
GROUPS = ("callbacks", "logger")


def _constructor_hints(target: str) -> dict[str, Any]:
    try:
        obj = locate(target)
        init = obj.__init__ if inspect.isclass(obj) else obj
        hints = typing.get_type_hints(init)
    except Exception:  # noqa: BLE001 - unknown or unresolvable annotations: check nothing
        return {}
    hints.pop("return", None)
    return hints


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return "a list"
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any) -> bool | None:
    """True/False when the annotation is understood, None when it is not (not checked)."""
    if value is None or hint is Any:
        return True  # nulls are the constructors' business (many defaults are None)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        results = [matches(value, a) for a in typing.get_args(hint)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return isinstance(value, list | tuple)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    return None


def check_node(name: str, node: Any) -> None:
    """Raise ``ValueError`` naming ``name.key`` for the first value of the wrong type."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    hints = _constructor_hints(str(node._target_))
    plain = OmegaConf.to_container(node, resolve=True)
    for key, value in plain.items():
        if (
            key.startswith("_")
            or key not in hints
            or isinstance(value, dict)
            and "_target_" in value
        ):
            continue
        if matches(value, hints[key]) is False:
            raise ValueError(f"{name}.{key}={value!r} is not {_describe(hints[key])}")


# _target_ paths that moved: configs written before (a user's own yaml, a copied run config)
# keep working, with a notice naming the new path
MOVED_TARGETS = {
    "nextok.lit.sampling.SamplingCallback": "nextok.lit.callbacks.SamplingCallback",
    "nextok.lit.sample_callback.SamplingCallback": "nextok.lit.callbacks.SamplingCallback",
    "nextok.lit.downstream.DownstreamEval": "nextok.lit.callbacks.DownstreamEval",
    "nextok.lit.host_syncs.HostSyncCounter": "nextok.lit.callbacks.HostSyncCounter",
    "nextok.lit.mixture_tokens.MixtureTokens": "nextok.lit.callbacks.MixtureTokens",
    "nextok.lit.slurm.SlurmRequeue": "nextok.lit.callbacks.SlurmRequeue",
    "nextok.lit.optim.AdamWConfig": "nextok.optim.AdamWConfig",
    "nextok.lit.optim.ScheduleConfig": "nextok.optim.ScheduleConfig",
    "nextok.lit.muon.MuonConfig": "nextok.optim.MuonConfig",
}


def moved_targets(cfg: DictConfig) -> dict[str, tuple[str, str]]:
    """``{"callbacks.sampling": (old, new)}`` for each node whose ``_target_`` names a moved class."""
    nodes = [(name, cfg.get(name)) for name in NODES]
    for group in GROUPS:
        nodes += [(f"{group}.{key}", node) for key, node in (cfg.get(group) or {}).items()]
    out = {}
    for where, node in nodes:
        old = node.get("_target_") if isinstance(node, DictConfig) else None
        if old in MOVED_TARGETS:
            out[where] = (old, MOVED_TARGETS[old])
    return out


def with_moved_targets(cfg: DictConfig) -> DictConfig:
    """``cfg`` itself when no ``_target_`` moved; else a new config whose moved ``_target_``s name
    the new home (``cfg`` is not written), with a notice per node."""
    moved = moved_targets(cfg)
    if not moved:
        return cfg
    overlay: dict[str, Any] = {}
    for where, (old, new) in moved.items():
        node = overlay
        for part in where.split("."):
            node = node.setdefault(part, {})
        node["_target_"] = new
        say(f"{where}._target_: {old} moved to {new}; update your config")
    return merged(cfg, overlay)


def check_tasks(cfg: DictConfig) -> None:
    """A ``stdlib_next_line`` task must hold out the files the data config holds out."""
    tasks, data = cfg.get("tasks"), cfg.get("data")
    if not tasks or data is None:
        return
    specs = OmegaConf.to_container(tasks, resolve=True)
    check_task_specs(specs, OmegaConf.to_container(data, resolve=True))


# optimizer configs whose own __post_init__ checks values (ranges, choices): built here once
OPTIM_CONFIGS = ("nextok.optim.AdamWConfig", "nextok.optim.MuonConfig")


def check_optim_values(node: Any) -> None:
    """Build the optimizer config now, so a bad value (``optim.ns_dtype=fp16``) is refused before
    the tokenizer trains, in the config class's own one-line words."""
    if not isinstance(node, DictConfig) or node.get("_target_") not in OPTIM_CONFIGS:
        return
    values = OmegaConf.to_container(node, resolve=True)
    cls = locate(values.pop("_target_"))
    try:
        cls(**values)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"optim: {err}") from err


def check_config(cfg: DictConfig) -> DictConfig:
    """Types of every constructor argument, the ranges of the run's numeric values
    (:mod:`nextok.run.value_ranges`), then the model config itself (before any data work).

    Returns the checked config: ``cfg``, or a new one where a ``_target_`` moved
    (:func:`with_moved_targets`); ``cfg`` is never written."""
    cfg = with_moved_targets(cfg)
    for name in NODES:
        check_node(name, cfg.get(name))
    for group in GROUPS:
        for key, node in (cfg.get(group) or {}).items():
            check_node(f"{group}.{key}", node)
    check_value_ranges(cfg)
    check_tasks(cfg)
    check_optim_values(cfg.get("optim"))
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_", None)
    if model.get("vocab_size") is None:
        model["vocab_size"] = max(int(cfg.get("pad_vocab_multiple_of") or 1), 256)  # checked later
    try:
        ModelConfig.from_dict(model)
    except TypeError as err:
        raise ValueError(f"model: {err}") from err
    return cfg
