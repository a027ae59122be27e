"""Ranges of the numeric values a run needs, checked before any work (next to the type checks).

A type check cannot refuse ``trainer.max_steps=-5`` or ``data.num_workers=-1``; Lightning and
PyTorch would, after the tokenizer has trained, in several lines (or, for ``max_steps=0`` and
``max_tokens=0``, train nothing). Each rule here is one line naming the key, the value and what
is expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _positive(v: Any) -> bool:
    return v > 0


def _non_negative(v: Any) -> bool:
    return v >= 0


def _steps(v: Any) -> bool:
    return v == -1 or v > 0


def _val_interval(v: Any) -> bool:
    return v > 0 if isinstance(v, int) else 0 < v <= 1


# key -> (accepts the value, what is expected); null values are not checked (the defaults)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "trainer.max_steps": (_steps, "-1 (no step limit) or a positive number of optimizer steps"),
    "trainer.min_steps": (_non_negative, ">= 0"),
    "trainer.max_epochs": (_steps, "-1 (no epoch limit) or a positive number of epochs"),
    "trainer.val_check_interval": (
        _val_interval,
        "a positive number of training batches, or a fraction of an epoch in (0, 1]",
    ),
    "trainer.check_val_every_n_epoch": (_positive, "a positive number of epochs or null"),
    "trainer.log_every_n_steps": (_positive, "a positive number of steps"),
    "trainer.num_sanity_val_steps": (lambda v: v >= -1, "-1 (all) or >= 0 batches"),
    "trainer.num_nodes": (_positive, "a positive number of nodes"),
    "trainer.accumulate_grad_batches": (_positive, "a positive number of batches"),
    "max_tokens": (_positive, "a positive number of tokens or null"),
    "global_batch_size": (_positive, "a positive number of sequences or null"),
    "global_batch_tokens": (_positive, "a positive number of tokens or null"),
    "data.num_workers": (_non_negative, "0 (load in the main process) or more DataLoader workers"),
    "data.val_batch_size": (_positive, "a positive number of sequences or null"),
    "data.max_val_batches": (_positive, "a positive number of batches or null (all)"),
    "data.encode_batch_docs": (_positive, "a positive number of documents"),
    "data.cache_shard_tokens": (_positive, "a positive number of tokens"),
    "data.val_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
}
# keys of every callback node that has them (ModelCheckpoint's)
CALLBACK_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "every_n_train_steps": (_non_negative, "0 (off) or a positive number of steps, or null"),
    "save_top_k": (lambda v: v >= -1, "-1 (keep all), 0 (none) or a positive number"),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check(key: str, value: Any, rule: tuple[Callable[[Any], bool], str]) -> None:
    accepts, expected = rule
    if _is_number(value) and not accepts(value):
        raise ValueError(f"{key}={value!r}: expected {expected}")


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def check_value_ranges(cfg: DictConfig) -> None:
    """Raise ``ValueError`` (one line naming the key) for the first value out of its range."""
    for key, rule in RULES.items():
        _check(key, _select(cfg, key), rule)
    for name, node in (cfg.get("callbacks") or {}).items():
        if not isinstance(node, DictConfig):
            continue
        for key, rule in CALLBACK_RULES.items():
            if key in node:
                _check(f"callbacks.{name}.{key}", _select(node, key), rule)
