"""Shared helpers for the end-to-end tests (a plain module: conftest names collide across folders)."""

from __future__ import annotations

import shutil
import sys


def console_cmd(name: str, module: str) -> list[str]:
    """The installed console script, or ``python -m module`` when it is not on PATH."""
    exe = shutil.which(name)
    return [exe] if exe else [sys.executable, "-m", module]
