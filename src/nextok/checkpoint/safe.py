"""``torch.load`` of a file given as a checkpoint, weights only: the one loader of ``.ckpt``
files (training resume, generate, eval, export, a sharded folder's ``meta.pt``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from nextok.checkpoint.file import checkpoint_file_problem


class UnsafeCheckpointError(ValueError):
    """A file that only loads by running arbitrary code (``torch.load(weights_only=False)``)."""


def safe_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: tensors and plain containers only.

    A pickle that asks for anything else (a class, a function: a crafted file can run code this
    way) is refused with one line; it is never loaded with ``weights_only=False``.
    """
    problem = checkpoint_file_problem(path)
    if problem is not None:
        raise ValueError(f"cannot load checkpoint {path}: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, KeyError, OSError) as err:  # a damaged archive
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load checkpoint {path}: damaged ({first[:200]})") from err
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).strip().splitlines()]
        why = next((ln for ln in lines if "GLOBAL" in ln), None)
        if why is None:  # not a pickle of anything: a truncated or foreign file
            raise ValueError(
                f"cannot load checkpoint {path}: not a PyTorch checkpoint file"
            ) from err
        why = why.split("WeightsUnpickler error:")[-1].split(" was not an allowed")[0].strip()
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers "
            f"({why}); nextok loads checkpoints with torch.load(weights_only=True) only, since "
            "unpickling anything else can run code"
        ) from err
