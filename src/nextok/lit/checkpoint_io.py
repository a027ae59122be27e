"""Lightning's CheckpointIO plugin over nextok's checkpoint package: atomic saves
(:func:`nextok.checkpoint.atomic_torch_save`) and weights-only loads
(:func:`nextok.checkpoint.safe_load`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from nextok.checkpoint import atomic_torch_save, safe_load


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO plugin whose saves are atomic on local/shared POSIX filesystems."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO does not take storage_options; got {storage_options!r}"
            )
        if "://" in str(path):  # remote (fsspec) paths: keep Lightning's transaction-based save
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Through :func:`nextok.checkpoint.safe_load` (weights only, one line for a file that is
        not a checkpoint); a sharded folder is named as such."""
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        if Path(path).is_dir():
            raise ValueError(
                f"{path} is a sharded (distributed) checkpoint folder: resume it with the strategy "
                "that wrote it (trainer=fsdp, the same number of processes), or consolidate it "
                "(nextok-consolidate) and start from the file with init_from="
            )
        return safe_load(path)
