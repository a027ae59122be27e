"""Which process owns a temp name: ``<host>-<pid>`` tags, so a later start can tell the leftovers
of a killed process (same host, pid gone) from the work of one still running."""

from __future__ import annotations

import os
import socket


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this host (also one of another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, for temp names."""
    return f"{socket.gethostname()}-{os.getpid()}"


def owner_gone(host: str, pid: int) -> bool:
    """True when the owner ``host``/``pid`` provably no longer runs (this host, pid not alive);
    another host's processes cannot be seen, so theirs never count as gone."""
    return host == socket.gethostname() and pid != os.getpid() and not pid_alive(pid)
