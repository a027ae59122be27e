"""RoPE in config.json: ``rope_theta`` + ``rope_scaling`` (legacy) or ``rope_parameters``
(transformers 5), both ways."""

from __future__ import annotations

from nextok.hf.family import UnsupportedConfig, refuse
from nextok.model import ModelConfig
from nextok.model.config import ROPE_SCALINGS

_SCALING_KEYS = {"default": (), **ROPE_SCALINGS}  # the model's table, plus "no scaling"


def rope_in(c: dict, where: str) -> tuple[float, dict | None]:
    """(theta, our rope_scaling) from ``rope_parameters`` (transformers 5) or the legacy
    ``rope_theta`` + ``rope_scaling`` fields."""
    for key in ("rope_scaling", "rope_parameters"):
        if c.get(key) and not isinstance(c[key], dict):
            raise refuse(where, key, c[key], "expected one dict of RoPE parameters")
    if c.get("rope_scaling") and c.get("rope_parameters"):
        _same_rope(c, where)
    # transformers reads ``rope_scaling or rope_parameters``
    field = "rope_scaling" if c.get("rope_scaling") else "rope_parameters"
    params = c.get(field) or {}
    params = dict(params)
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    theta = params.pop("rope_theta", None)
    top = c.get("rope_theta")
    if theta is not None and top is not None and float(theta) != float(top):
        raise refuse(where, "rope_theta", top, f"it contradicts {field}.rope_theta={theta}")
    theta = float(theta if theta is not None else top if top is not None else 10000.0)
    if kind not in _SCALING_KEYS:
        raise refuse(
            where, f"{field}.rope_type", kind, f"nextok implements {sorted(_SCALING_KEYS)}"
        )
    for key in ("partial_rotary_factor",):
        for src in (params, c):
            if src.get(key, 1.0) != 1.0:
                raise refuse(where, key, src[key], "nextok rotates the whole head")
        params.pop(key, None)
    if kind == "llama3" and "original_max_position_embeddings" not in params:
        params["original_max_position_embeddings"] = c.get("max_position_embeddings")
    extra = sorted(set(params) - set(_SCALING_KEYS[kind]))
    if extra:
        raise refuse(
            where, f"{field}.{extra[0]}", params[extra[0]], f"not used by rope_type {kind}"
        )
    if kind == "default":
        return theta, None
    missing = [k for k in _SCALING_KEYS[kind] if params.get(k) is None]
    if missing:
        raise UnsupportedConfig(f"{where}: {field} of rope_type {kind} lacks {missing}")
    if kind == "llama3" and not float(params["high_freq_factor"]) > float(
        params["low_freq_factor"]
    ):
        raise refuse(
            where,
            f"{field}.high_freq_factor",
            params["high_freq_factor"],
            f"it must exceed low_freq_factor ({params['low_freq_factor']}): llama3 scaling "
            "interpolates between the two",
        )
    return theta, {"type": kind, **{k: params[k] for k in _SCALING_KEYS[kind]}}


def _rope_kind(d: dict) -> tuple[str, dict]:
    d = dict(d)
    kind = d.pop("rope_type", None) or d.pop("type", None) or "default"
    d.pop("type", None)
    return kind, d


def _same_rope(c: dict, where: str) -> None:
    """Both ``rope_scaling`` and ``rope_parameters`` are set: transformers uses ``rope_scaling``
    (theta from it, else ``rope_theta``, else 10000); refuse unless both say the same."""
    ks, ds = _rope_kind(c["rope_scaling"])
    kp, dp = _rope_kind(c["rope_parameters"])
    theta_s = float(ds.pop("rope_theta", c.get("rope_theta", 10000.0)))
    theta_p = dp.pop("rope_theta", None)
    if ks != kp or ds != dp or (theta_p is not None and float(theta_p) != theta_s):
        raise UnsupportedConfig(
            f"{where}: rope_scaling={c['rope_scaling']!r} and rope_parameters="
            f"{c['rope_parameters']!r} disagree (transformers reads rope_scaling, with theta "
            f"{theta_s}); keep only the one the weights were trained with"
        )


def rope_out(cfg: ModelConfig) -> dict:
    """Legacy ``rope_theta`` + ``rope_scaling``: read by transformers 4.x and 5.x alike."""
    scaling = None
    if cfg.rope_scaling is not None:
        rs = dict(cfg.rope_scaling)
        scaling = {"rope_type": rs.pop("type"), **rs}
    return {"rope_theta": cfg.rope_theta, "rope_scaling": scaling}
