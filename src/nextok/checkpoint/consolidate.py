"""Turn a sharded (FSDP2 / distributed) checkpoint folder into one checkpoint file.

``trainer=fsdp`` saves each checkpoint as a folder: one ``.distcp`` shard per rank plus
``meta.pt`` (Lightning's loop/callback state and the ``nextok`` entry). ``generate``, ``eval`` and
``export`` read single files, so this gathers the model weights on one process, no process group
needed. The output has the ``state_dict`` (keys ``model.*``), the ``nextok`` entry and the loop
state (``global_step``, ...); optimizer state is left out (not needed to sample or export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nextok.checkpoint.dcp import load_dcp, read_sharded_meta
from nextok.checkpoint.format import META_KEY, META_PT
from nextok.checkpoint.save import atomic_torch_save
from nextok.dtypes import as_dtype


def default_output(path: Path) -> Path:
    """``.../last.ckpt`` (folder) -> ``.../last.consolidated.pt``: not ``*.ckpt``, so resume=auto
    and checkpoint rotation never mistake it for a training checkpoint."""
    return path.with_name(path.name.removesuffix(".ckpt") + ".consolidated.pt")


def _load_sharded_model_state(path: Path) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner

    state: dict[str, Any] = {}
    # keys={"state_dict"}: read the model weights only, never the (2x larger) optimizer state.
    load_dcp(state, path, planner=_EmptyStateDictLoadPlanner(keys={"state_dict"}))
    if "state_dict" not in state:
        raise ValueError(f"{path}: the sharded checkpoint holds no 'state_dict' entry")
    return state["state_dict"]


def consolidate(
    path: str | Path, output: str | Path | None = None, dtype: str | torch.dtype | None = None
) -> Path:
    """Write the single-file checkpoint for the sharded folder ``path``; returns its path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_file():
        raise ValueError(f"{path} is already a single-file checkpoint; nothing to consolidate")
    meta = read_sharded_meta(path)  # .metadata (restricted unpickler) and meta.pt
    if META_KEY not in meta:
        raise ValueError(f"{path}/{META_PT} has no '{META_KEY}' entry: not written by nextok-train")
    dtype = as_dtype(dtype, "--dtype")

    state_dict = _load_sharded_model_state(path)
    for key, value in state_dict.items():
        if dtype is not None and torch.is_floating_point(value):
            state_dict[key] = value.to(dtype)
    out = Path(output) if output is not None else default_output(path)
    checkpoint = {**meta, "state_dict": state_dict}
    checkpoint.pop("optimizer_states", None)
    atomic_torch_save(checkpoint, out)  # never a half-written file under the final name
    return out
