"""One tiny real ``nextok-train`` run (its own BPE, 3% of the files held out, the sampling
callback on) shared by the end-to-end tests that only read what a finished run left behind."""

from __future__ import annotations

import os

import pytest
from filelock import FileLock

from helpers.cli import cli, ok, tiny_args


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """``dir``, ``ckpt`` (last.ckpt), ``out`` (its stdout), ``cache`` (its token cache).

    Made once per test session, also under pytest-xdist (``-n 2``): the first worker that needs
    it trains it in the session's shared temp dir, the other waits for it and reads it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is <session dir>/popen-gw<N>
        base = base.parent
    root = base / "tiny_run"
    cache, out = root / "cache", root / "stdout.txt"
    with FileLock(str(base / "tiny_run.lock")):
        if not out.exists():
            args = tiny_args(
                root / "run", None, "data.val_fraction=0.03", f"data.cache_dir={cache}"
            )
            proc = ok(cli("nextok-train", *args))
            out.write_text(proc.stdout)
    return {
        "root": root,
        "dir": root / "run",
        "ckpt": root / "run" / "checkpoints" / "last.ckpt",
        "out": out.read_text(),
        "cache": cache,
    }
