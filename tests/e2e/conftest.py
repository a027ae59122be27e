"""One tiny real ``nextok-train`` run (its own BPE, 3% of the files held out, the sampling
callback on) shared by the end-to-end tests that only read what a finished run left behind."""

from __future__ import annotations

import pytest

from helpers.cli import cli, ok, tiny_args


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """``dir``, ``ckpt`` (last.ckpt), ``out`` (its stdout), ``cache`` (its token cache)."""
    root = tmp_path_factory.mktemp("tiny_run")
    cache = root / "cache"
    args = tiny_args(root / "run", None, "data.val_fraction=0.03", f"data.cache_dir={cache}")
    proc = ok(cli("nextok-train", *args))
    return {
        "root": root,
        "dir": root / "run",
        "ckpt": root / "run" / "checkpoints" / "last.ckpt",
        "out": proc.stdout,
        "cache": cache,
    }
