"""``init_from=PATH``: start training from a Hugging Face folder's or a nextok checkpoint's weights.

Unlike ``ckpt_path``/``resume`` (which continue a run: optimizer, schedule, step), only the
weights, the model config and the tokenizer are taken; everything else starts fresh. The model
config comes from the source: a ``model.*`` override that would change what the weights mean is
refused in one line; ``dropout``, ``init_std`` and a shorter ``block_size`` are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer

from nextok.data.tokenization.tokenizer import SpecialTokens
from nextok.model import ModelConfig

ALLOWED = ("dropout", "init_std", "block_size")  # do not change what the weights compute


@dataclass
class InitSource:
    path: str
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Tokenizer | None
    special: SpecialTokens | None
    hf_family: str | None  # the imported model_type, preferred again by export
    hf_generation: dict[str, Any] | None = None  # its generation_config.json, written back too


def model_overrides(task_overrides: list[str]) -> list[str]:
    """The ``model.*`` keys given on the command line (Hydra's task overrides); a model group
    choice (``model=...``) is returned as ``"model"``."""
    keys = []
    for o in task_overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key == "model" or key.startswith("model."):
            keys.append(key)
    return keys


def load_source(
    path: str,
    overrides: dict[str, Any],
    verify: bool = True,
    eos: str | None = None,
    add_bos: bool | None = None,
) -> InitSource:
    """Read the weights; ``overrides`` are the user's explicit ``model.*`` values; ``verify``:
    checksums and finite weights (:func:`nextok.checkpoint.load_checkpoint`); ``eos`` /
    ``add_bos`` its ``data.eos_token`` / ``data.add_bos`` (for a Hugging Face folder)."""
    from nextok.checkpoint.verify import refuse_nonfinite
    from nextok.hf import is_hf_folder, read_hf_folder

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"init_from={path} does not exist")
    block = overrides.get("block_size")
    if is_hf_folder(p):
        m = read_hf_folder(
            p, block_size=block, dropout=overrides.get("dropout"), eos=eos, add_bos=add_bos
        )
        if verify:
            refuse_nonfinite(m.state_dict, p)
        src = InitSource(
            str(p), m.config, m.state_dict, m.tokenizer, m.special, m.family, m.generation
        )
    elif p.is_dir() and (p / ".metadata").is_file():
        raise ValueError(
            f"init_from={path} is a sharded (distributed) checkpoint folder; consolidate it into "
            f"one file first: nextok-consolidate {path}"
        )
    elif p.is_dir():
        raise FileNotFoundError(
            f"init_from={path} is a folder without config.json (expected a Hugging Face model "
            "folder or a nextok .ckpt file)"
        )
    else:
        from nextok.checkpoint import load_checkpoint
        from nextok.checkpoint.format import shorten_context

        ck = load_checkpoint(p, verify=verify)
        sd = dict(ck.model.state_dict())
        cfg = shorten_context(ck.config, sd, block, f"init_from={path}")
        special = getattr(ck, "special", None)
        meta = ck.meta
        src = InitSource(
            str(p), cfg, sd, ck.tokenizer, special, meta.get("hf_family"), meta.get("hf_generation")
        )
    src.config = _apply_overrides(src.config, overrides, path)
    return src


def _apply_overrides(cfg: ModelConfig, overrides: dict[str, Any], path: str) -> ModelConfig:
    d = cfg.to_dict()
    for key, value in overrides.items():
        if key not in d:
            raise ValueError(f"init_from: model.{key} is not a model config key")
        if key in ALLOWED:
            d[key] = value
        elif value != d[key]:
            raise ValueError(
                f"init_from: model.{key}={value!r} contradicts {path} ({key}={d[key]!r}); the "
                "model config comes from the source (only dropout, init_std and a shorter "
                "block_size may be changed)"
            )
    return ModelConfig.from_dict(d)


def load_init_source(cfg: DictConfig, model_keys: list[str]) -> InitSource:
    """Load ``init_from``'s weights, model config and tokenizer (``cfg`` is only read; the run's
    plan takes the model config from the result: :mod:`nextok.run.plan`).

    ``model_keys``: the ``model.*`` keys the user set explicitly (checked against the source)."""
    if "model" in model_keys:
        raise ValueError(
            "init_from takes the model config from the source; drop the model=... group override"
        )
    overrides = {}
    for key in model_keys:
        value = OmegaConf.select(cfg, key)
        overrides[key[len("model.") :]] = (
            OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
        )
    data = cfg.get("data") or {}
    return load_source(
        str(cfg.init_from),
        overrides,
        bool(cfg.get("verify", True)),
        data.get("eos_token"),
        data.get("add_bos"),
    )
