"""A read-only checkpoint folder and a full disk, for real: each is one line naming the file, and
the previous checkpoint stays intact. Root (as in CI) mounts a small tmpfs and a read-only bind
mount; other users get a read-only folder through permissions and no full-disk case."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.cli import cli, ok, one_line_error, tiny_args


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def disk(tmp_path):
    """A 6 MB filesystem of its own (root), else a plain folder."""
    d = tmp_path / "disk"
    d.mkdir()
    mounted = (
        os.geteuid() == 0
        and shutil.which("mount")
        and _mount("-t", "tmpfs", "-o", "size=6m", "tmpfs", str(d))
    )
    yield d, bool(mounted)
    if mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.mark.slow
def test_read_only_checkpoint_dir_and_full_disk(disk, tmp_path):
    """Slow (3 training runs)."""
    d, mounted = disk
    run = d / "run"
    base = tiny_args(
        run,
        None,
        "callbacks.sampling=null",
        "callbacks.best_checkpoint=null",
        f"data.cache_dir={tmp_path / 'cache'}",
        "trainer.val_check_interval=2",
    )
    ok(cli("nextok-train", *base, "trainer.max_steps=2"))
    ckdir = run / "checkpoints"
    last = ckdir / "last.ckpt"
    before = last.read_bytes()

    # read-only checkpoint folder
    if mounted:
        assert _mount("--bind", str(ckdir), str(ckdir)) and _mount(
            "-o", "remount,bind,ro", str(ckdir)
        )
    else:
        ckdir.chmod(0o555)
    try:
        line = one_line_error(
            cli("nextok-train", *base, "trainer.max_steps=4", "resume=auto"),
            1,
            f"cannot write checkpoint {last}",
            "(the previous checkpoint there is intact)",
        )
        assert ("Read-only file system" if mounted else "Permission denied") in line
    finally:
        if mounted:
            subprocess.run(["umount", str(ckdir)], capture_output=True)
        else:
            ckdir.chmod(0o755)
    assert last.read_bytes() == before and not list(ckdir.glob(".*tmp*"))

    if not mounted:
        return  # a full disk needs a filesystem of its own
    # full disk: leave ~150 kB, less than one checkpoint (~450 kB), more than the logs need
    free = shutil.disk_usage(d).free
    Path(d / "filler").write_bytes(b"\0" * max(0, free - 150_000))
    line = one_line_error(
        cli("nextok-train", *base, "trainer.max_steps=4", "resume=auto"),
        1,
        f"cannot write checkpoint {last}: No space left on device",
        "(the previous checkpoint there is intact)",
    )
    assert last.read_bytes() == before and not list(ckdir.glob(".*tmp*"))
    assert torch.load(last, weights_only=True)["global_step"] == 2
