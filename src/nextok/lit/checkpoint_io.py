"""Atomic checkpoint writes: temp file in the same directory, fsync, then ``os.replace``.

Why not Lightning's default: ``TorchCheckpointIO`` (lightning 2.6) serialises to memory, writes a
temp file from ``tempfile.mkstemp()`` (the *system* temp dir) and ``shutil.move``s it. When
``/tmp`` and the run directory are on different filesystems (the usual case on clusters: local
``/tmp``, shared run dirs) the move degrades to a copy into the final path, so a kill during it
leaves a truncated ``last.ckpt``; nothing is fsync'ed either. A rename inside one directory is
atomic on POSIX: readers see the old file or the new one, never a partial one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nextok.checkpoint import safe_load
from nextok.checkpoint_verify import add_checksums
from nextok.io import atomic_write


class _ErrorRememberingFile:
    """A file's ``write`` that remembers the first ``OSError`` (e.g. ENOSPC), which
    ``torch.save``'s C++ zip writer would otherwise report as a bare position mismatch."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that it is either fully written or untouched
    (:func:`nextok.io.atomic_write`: temp file, fsync, rename)."""
    path = Path(path)
    if isinstance(obj, dict):
        add_checksums(obj)  # a nextok checkpoint records each tensor's checksum

    def write(f: Any) -> None:
        out = _ErrorRememberingFile(f)
        try:
            torch.save(obj, out)
        except RuntimeError:  # torch's zip writer hides a failed write ("unexpected pos")
            if out.error is not None:
                raise out.error from None
            raise

    try:
        atomic_write(path, write)
    except OSError as err:  # read-only dir, full disk, quota: one clear line, old file untouched
        previous = (
            "the previous checkpoint there is intact" if path.exists() else "no earlier file there"
        )
        raise OSError(
            err.errno, f"cannot write checkpoint {path}: {err.strerror or err} ({previous})"
        ) from err


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
