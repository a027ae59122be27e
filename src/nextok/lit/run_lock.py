"""One training process per run directory: a lock file holding the owner's pid and host.

Two runs writing one run dir mix their ``last.ckpt``, ``config.yaml``, ``tokenizer.json`` and
logs; both would exit 0. The lock is ``<run_dir>/.nextok.lock``, created with ``O_EXCL`` (atomic
on local and NFSv3+ filesystems). A lock whose process is gone (same host, pid not running) or
that belongs to the same Slurm job (a requeued job restarting on another node) is stale and is
taken over; any other lock is refused with one line naming its owner.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".nextok.lock"


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

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._read()
                if held is None:  # being written right now, or garbage: look again
                    time.sleep(0.2)
                    held = self._read()
                if held is not None and not _is_stale(held):
                    raise RunDirLocked(
                        f"run dir {self.path.parent} is in use by pid {held.get('pid')} on "
                        f"{held.get('host')} (since {held.get('started')}); use another "
                        f"hydra.run.dir, or delete {self.path} if that process is gone"
                    ) from None
                self.took_over = held or {}
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_owner(), f)
            self.held = True
            atexit.register(self.release)
            return self
        raise RunDirLocked(f"could not take the lock {self.path} (another process keeps taking it)")

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
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
