"""Atomic checkpoint writes: temp file in the same directory, fsync, then ``os.replace``.

Lightning's default ``TorchCheckpointIO`` (lightning 2.6) writes a temp file in the *system* temp
dir and ``shutil.move``s it: when ``/tmp`` and the run directory are on different filesystems
(local ``/tmp``, shared run dirs) the move is a copy into the final path, so a kill during it
leaves a truncated ``last.ckpt``, and nothing is fsync'ed. A rename inside one directory is
atomic on POSIX: readers see the old file or the new one, never a partial one. The Lightning
plugin over this function is ``nextok.lit.checkpoint_io.AtomicCheckpointIO``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nextok.checkpoint.verify import add_checksums
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
    (:func:`nextok.io.atomic_write`: temp file, fsync, rename); a nextok checkpoint records each
    tensor's checksum (:mod:`nextok.checkpoint.verify`)."""
    path = Path(path)
    if isinstance(obj, dict):
        add_checksums(obj)

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
