"""The format of nextok's checkpoints: the names every reader and writer shares, and the few
transformations of the saved weights that more than one reader needs.

A ``nextok-train`` checkpoint is a Lightning ``.ckpt`` file (or, with FSDP2, a sharded folder
whose non-tensor part is :data:`META_PT`) whose ``state_dict`` keys start with ``model.`` and
which carries the :data:`META_KEY` entry::

    {"model_config": dict, "tokenizer_json": str, "special_tokens": dict, "tokens_seen": int,
     "rng": dict, "data_config": dict, "checksums": dict, "val_loss": float, ...}
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from nextok.model import ModelConfig

META_KEY = "nextok"  # the checkpoint's own entry
META_PT = "meta.pt"  # Lightning's ModelParallelStrategy: the non-tensor part of a sharded folder
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index of a sharded folder
CHECKPOINT_DIR = "checkpoints"  # inside a run dir


def model_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the LightningModule's ``model.`` prefix (and torch.compile's ``_orig_mod.``)."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith("model."):
            continue
        key = key[len("model.") :].replace("_orig_mod.", "")
        out[key] = value
    return out


def shorten_context(
    config: ModelConfig, state: dict[str, torch.Tensor], block_size: int | None, where: str
) -> ModelConfig:
    """The config for a context of ``block_size`` (<= the saved one); a learned position table in
    ``state`` is cut to it (in place). ``where`` names the source in the one-line error."""
    if block_size is None or block_size == config.block_size:
        return config
    if block_size > config.block_size:
        raise ValueError(
            f"block_size={block_size} exceeds {where}'s model.block_size={config.block_size}"
        )
    if "pos_emb.weight" in state:
        state["pos_emb.weight"] = state["pos_emb.weight"][:block_size].clone()
    return ModelConfig.from_dict({**config.to_dict(), "block_size": block_size})


def rng_state() -> dict[str, Any]:
    """Every global RNG (torch, CUDA, Python, NumPy) as plain containers and tensors, so a
    checkpoint holding it loads with ``torch.load(weights_only=True)``."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA only with the same number of devices)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
