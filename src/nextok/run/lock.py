"""One training process per run directory: a lock file holding the owner's pid and host.

Two runs writing one run dir mix their ``last.ckpt``, ``config.yaml``, ``tokenizer.json`` and
logs; both would exit 0. The lock is ``<run_dir>/.nextok.lock``: the holder keeps an exclusive
``flock`` on it for its lifetime (the kernel drops it when the process dies, ``kill -9``
included), and its content (pid, host, Slurm job) is information for the refusal line. Deciding
under the ``flock`` makes a take-over atomic: of two processes taking over a stale lock at the
same moment, one wins and the other is refused. A file left by a process that is gone (same
host, pid not running) or by the same Slurm job (a requeued job restarting on another node) is
stale and is taken over; a live holder is refused with one line naming its owner. Where the
filesystem has no ``flock``, an ``O_EXCL`` create decides (atomic on local and NFSv3+).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".nextok.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class RunDirLocked(RuntimeError):
    """Another live process trains in this run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _owner() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _is_stale(held: dict) -> bool:
    me = _owner()
    if held.get("slurm_job_id") and held.get("slurm_job_id") == me["slurm_job_id"]:
        return True  # the same Slurm job, requeued: its earlier incarnation is gone
    if held.get("host") != me["host"]:
        return False  # cannot see another host's processes
    pid = held.get("pid")
    return not isinstance(pid, int) or pid == me["pid"] or not _alive(pid)


class RunDirLock:
    """``with RunDirLock(run_dir): ...`` or ``acquire()``/``release()``; released at exit too."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False
        self.took_over: dict | None = None  # the stale lock replaced, if any
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live nextok process holds it
                os.close(fd)
                held = self._read_settled()
                job = (held or {}).get("slurm_job_id")
                if job and job == os.environ.get("SLURM_JOB_ID"):  # our job's earlier incarnation
                    return self._acquire_exclusive()
                self._refuse(held or {})
            except OSError:  # no flock on this filesystem: the pid file alone decides
                os.close(fd)
                return self._acquire_exclusive()
            if not self._same_file(fd):  # unlinked by a releasing holder meanwhile: reopen
                os.close(fd)
                continue
            held = self._read()  # under the flock: nobody else decides at the same time
            if held is not None and not _is_stale(held):  # a holder that does not flock
                os.close(fd)
                self._refuse(held)
            self.took_over = held
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_owner()).encode())
            self._fd = fd
            os.register_at_fork(after_in_child=self._forget_in_child)
            return self._held()
        raise RunDirLocked(f"could not take the lock {self.path} (another process keeps taking it)")

    def _forget_in_child(self) -> None:
        """A forked child (a DataLoader worker) closes its copy of the locked descriptor: the
        ``flock`` belongs to the open file, so an orphaned worker would otherwise keep the run
        dir locked for seconds after its parent was killed (``kill -9``, then ``resume=auto``)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None
        self.held = False

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _acquire_exclusive(self) -> RunDirLock:
        """Without ``flock``: ``O_EXCL`` create, a stale file removed first."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _CLOEXEC, 0o644)
            except FileExistsError:
                held = self._read_settled()
                if held is not None and not _is_stale(held):
                    self._refuse(held)
                self.took_over = held or {}
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_owner(), f)
            return self._held()
        raise RunDirLocked(f"could not take the lock {self.path} (another process keeps taking it)")

    def _held(self) -> RunDirLock:
        self.held = True
        atexit.register(self.release)
        return self

    def _refuse(self, held: dict) -> None:
        raise RunDirLocked(
            f"run dir {self.path.parent} is in use by pid {held.get('pid')} on "
            f"{held.get('host')} (since {held.get('started')}); use another "
            f"hydra.run.dir, or delete {self.path} if that process is gone"
        ) from None

    def _read_settled(self) -> dict | None:
        """The lock's content; an empty or half-written one is read again after a moment."""
        held = self._read()
        if held is None:
            time.sleep(0.2)
            held = self._read()
        return held

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        if not self.held:
            return
        held = self._read()
        if held is not None and held.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)  # still under our flock: nobody reads it as free
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None
        self.held = False

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
