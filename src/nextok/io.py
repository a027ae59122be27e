"""Atomic writes for the files nextok writes (tokenizer, config, ids, results, checkpoints, exports).

Write to a temp file in the same directory, fsync it, then rename it over the target: a rename
inside one directory is atomic on POSIX, so a reader (another rank polling for the file, a later
resume) sees the old file or the new one, never a partial one.

Temp names are random and created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) relative to a
descriptor of the target folder, so a symlink planted at any name in that folder (or a folder
swapped for a symlink mid-write) is never followed: nothing outside the target is written or
chmod-ed. Writers that only take a file name (safetensors, ``tokenizers``) write into a fresh
private (0700) folder opened the same way. Plain Python: every package may use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".tmp-"  # temp names are ``.<name>.tmp-<random>`` (files, or folders of atomic_save)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def temp_name(name: str) -> str:
    """A fresh random temp name for the target ``name`` (unguessable: never pre-planted)."""
    return f".{name}{TEMP_MARK}{secrets.token_hex(8)}"


def _open_dir(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)


def _create_exclusive(dir_fd: int, name: str, mode: int) -> tuple[int, str]:
    while True:
        tmp = temp_name(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        try:
            return os.open(tmp, flags, mode, dir_fd=dir_fd), tmp
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], None], mode: int | None = None
) -> Path:
    """Create ``path`` by ``write(f)`` (``f`` a binary file) so it is fully written or untouched.

    ``mode``: the file's permissions (default: 0o666 less the umask, as ``open`` gives). The temp
    file is removed on any failure; the parent folder is created when missing."""
    path = Path(path)
    dir_fd = _open_dir(path.parent)
    try:
        fd, tmp = _create_exclusive(dir_fd, path.name, 0o666 if mode is None else 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                write(f)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
                ours = os.fstat(f.fileno()).st_ino
            if os.stat(tmp, dir_fd=dir_fd, follow_symlinks=False).st_ino != ours:
                raise OSError(f"{path.parent / tmp} was replaced while {path} was written")
            os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        _fsync(dir_fd)  # persist the rename itself (the directory entry)
    finally:
        os.close(dir_fd)
    return path


def atomic_save(
    path: str | os.PathLike, save: Callable[[Path], None], mode: int | None = None
) -> Path:
    """:func:`atomic_write` for writers that take a file name (safetensors, ``tokenizers``):
    ``save(tmp)`` writes ``tmp`` inside a fresh private folder next to ``path``."""
    path = Path(path)
    dir_fd = _open_dir(path.parent)
    tmp_dir = temp_name(path.name)
    try:
        os.mkdir(tmp_dir, 0o700, dir_fd=dir_fd)  # exclusive: fails on anything already there
        sub_fd = os.open(tmp_dir, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
        try:
            proc = Path(f"/proc/self/fd/{sub_fd}")  # the folder we made, even if renamed away
            save((proc if proc.is_dir() else path.parent / tmp_dir) / path.name)
            fd = os.open(path.name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=sub_fd)
            try:
                os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(path.name, path.name, src_dir_fd=sub_fd, dst_dir_fd=dir_fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path.name, dir_fd=sub_fd)
            os.close(sub_fd)
            with contextlib.suppress(OSError):
                os.rmdir(tmp_dir, dir_fd=dir_fd)
        _fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data), mode)


def _umask() -> int:
    """The process umask, read without changing it where /proc tells it (Linux)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(ln for ln in status if ln.startswith("Umask:")).split()[1], 8)
    old = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(old)
    return old


def _fsync(fd: int) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        os.fsync(fd)
