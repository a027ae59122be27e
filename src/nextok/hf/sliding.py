"""Sliding-window attention in ``config.json``, both ways: which layers slide, by each family's
rule as transformers computes it.

Rules (``rule`` of a family):

- ``"all"`` (Mistral, Mixtral): ``sliding_window`` set -> every layer slides; ``layer_types``
  is not read.
- ``"qwen"`` (Qwen2, Qwen3): the window counts only with ``use_sliding_window``; the sliding
  layers are ``layer_types`` when given, else those at index >= ``max_window_layers``.
- ``"qwen_all"`` (Qwen3-MoE): ``use_sliding_window`` -> every layer slides (transformers reads
  neither ``max_window_layers`` nor ``layer_types`` there).
"""

from __future__ import annotations

from nextok.hf.family import UnsupportedConfig, refuse
from nextok.model import ModelConfig

# transformers' defaults for a missing sliding_window (checked against the installed transformers
# by tests/hf/test_transformers_semantics.py)
SLIDING_DEFAULTS = {
    "mistral": 4096,
    "mixtral": None,
    "qwen2": 4096,
    "qwen3": 4096,
    "qwen3_moe": 4096,
}
MAX_WINDOW_LAYERS_DEFAULT = 28
KEYS = ("sliding_window", "use_sliding_window", "max_window_layers", "layer_types")
_KINDS = ("full_attention", "sliding_attention")


def window_in(
    c: dict, where: str, model_type: str, rule: str, n_layer: int
) -> tuple[int | None, list[int] | None]:
    """(sliding_window, sliding_layers) of ModelConfig for config.json ``c`` (layers None: all)."""
    if rule == "all":
        window = c.get("sliding_window", SLIDING_DEFAULTS[model_type])
        return _positive(window, where), None
    use = bool(c.get("use_sliding_window", False))
    window = c.get("sliding_window", SLIDING_DEFAULTS[model_type]) if use else None
    if rule == "qwen_all":
        return _positive(window, where), None
    layer_types = c.get("layer_types")
    if layer_types is None:
        first = c.get("max_window_layers", MAX_WINDOW_LAYERS_DEFAULT)
        layer_types = [_KINDS[window is not None and i >= first] for i in range(n_layer)]
    if not isinstance(layer_types, list) or len(layer_types) != n_layer:
        raise refuse(where, "layer_types", layer_types, f"expected a list of {n_layer} entries")
    bad = [t for t in layer_types if t not in _KINDS]
    if bad:
        raise refuse(where, "layer_types", bad[0], f"nextok has {list(_KINDS)}")
    layers = [i for i, t in enumerate(layer_types) if t == "sliding_attention"]
    if layers and window is None:
        raise refuse(
            where,
            "layer_types",
            "sliding_attention",
            "use_sliding_window is false, so the window those layers use is undefined",
        )
    if not layers:
        return None, None
    return _positive(window, where), (None if len(layers) == n_layer else layers)


def _positive(window, where: str) -> int | None:
    if window is None:
        return None
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        raise UnsupportedConfig(
            f"{where}: sliding_window={window!r} is not supported: expected a positive integer "
            "or null (no window)"
        )
    return window


def why_not(cfg: ModelConfig, rule: str) -> str | None:
    """Why a family of ``rule`` cannot express ``cfg``'s sliding window (None: it can)."""
    if cfg.sliding_window is None or rule == "qwen":
        return None
    if not rule:
        return "needs sliding_window=null (no sliding-window attention)"
    if cfg.sliding_layers is not None and len(cfg.sliding_layers) != cfg.n_layer:
        return "needs sliding_layers=null (every layer slides)"
    return None


def window_out(cfg: ModelConfig, rule: str) -> dict:
    """The config.json fields that give ``cfg``'s window under ``rule``."""
    w = cfg.sliding_window
    if rule == "all":
        return {"sliding_window": w}
    out = {"use_sliding_window": w is not None, "sliding_window": w}
    if rule == "qwen":
        types = [_KINDS[cfg.slides(i)] for i in range(cfg.n_layer)]
        sliding = [i for i, t in enumerate(types) if t == _KINDS[1]]
        out["max_window_layers"] = sliding[0] if sliding else cfg.n_layer
        out["layer_types"] = types
    return out
