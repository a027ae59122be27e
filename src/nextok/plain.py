"""Config values as plain Python: Hydra hands constructors OmegaConf containers, while
``datasets``, JSON and ``dict`` checks want real lists and dicts."""

from __future__ import annotations

from typing import Any


def to_plain(x: Any) -> Any:
    """``DictConfig``/``ListConfig`` -> ``dict``/``list`` (resolved); anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra, a dependency
        return x
    if isinstance(x, DictConfig | ListConfig):
        return OmegaConf.to_container(x, resolve=True)
    return x
