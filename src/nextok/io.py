"""Atomic writes for the small files a run writes (tokenizer, config, ids, results).

Write to a temp file in the same directory, fsync it, then ``os.replace`` it over the target: a
rename inside one directory is atomic on POSIX, so a reader (another rank polling for the file,
a later resume) sees the old file or the new one, never a partial one. Plain Python: every
package may use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_save(path: str | os.PathLike, save: Callable[[Path], None]) -> Path:
    """Create ``path`` by ``save(tmp)`` (for writers that take a file name: safetensors,
    ``tokenizers``) so it is fully written or untouched.

    The temp file is ``.<name>.tmp-<pid>`` next to ``path`` (concurrent writers never share
    one) and is removed on any failure; the parent folder is created when missing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        with open(tmp, "rb+") as f:  # writable: fsync of a read-only handle fails on Windows
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """:func:`atomic_save` through ``write(f)``, ``f`` a binary file."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_save(path, save)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
