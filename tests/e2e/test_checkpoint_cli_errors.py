"""Through the real commands: a text file or a truncated file as a
checkpoint, a missing ``ckpt=``/``out=``, and an export into someone's folder are each one line."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from helpers.checkpoints import write_checkpoint
from helpers.cli import cli, one_line_error


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    good = d / "good.ckpt"
    write_checkpoint(good)
    data = good.read_bytes()
    (d / "cut.ckpt").write_bytes(data[: len(data) // 3])
    (d / "notes.txt").write_text("my notes, not a checkpoint\n")
    (d / "texts").mkdir()
    (d / "texts" / "a.txt").write_text("a")
    return d


TEXT = "not a PyTorch checkpoint (zip archive expected; a text file)"


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        ("nextok-generate", ["ckpt={d}/notes.txt", "prompt=x"], TEXT),
        ("nextok-eval", ["ckpt={d}/notes.txt"], TEXT),
        ("nextok-export", ["ckpt={d}/notes.txt", "out={d}/hf"], TEXT),
        ("nextok-train", ["hydra.run.dir={d}/run", "ckpt_path={d}/notes.txt"], TEXT),
        ("nextok-train", ["hydra.run.dir={d}/run", "init_from={d}/notes.txt"], TEXT),
        ("nextok-eval", ["ckpt={d}/cut.ckpt"], "cut.ckpt: truncated: "),
        ("nextok-export", ["ckpt={d}/texts", "out={d}/hf"], "is a folder, not a checkpoint"),
        ("nextok-eval", [], "ckpt= is required; usage: nextok-eval ckpt=PATH"),
        ("nextok-export", ["ckpt={d}/good.ckpt"], "out= is required; usage: nextok-export"),
    ],
)
def test_bad_checkpoint_files_and_missing_arguments_are_one_line(files, name, args, needle):
    proc = cli(name, *(a.format(d=files) for a in args), cwd=files)
    one_line_error(proc, 2, needle)
    assert not (files / "hf").exists() and not (files / "run").exists()


def test_resume_auto_on_a_truncated_last_checkpoint_is_one_line(files, tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes((files / "cut.ckpt").read_bytes())
    proc = cli("nextok-train", f"hydra.run.dir={tmp_path / 'run'}", "resume=auto", cwd=tmp_path)
    one_line_error(proc, 2, f"cannot load checkpoint {last}: truncated: ")


def test_export_refuses_a_foreign_folder_a_file_and_a_read_only_folder(files, tmp_path):
    here = tmp_path / "project"
    here.mkdir()
    (here / "README.md").write_text("my project\n")
    good = f"ckpt={files / 'good.ckpt'}"
    one_line_error(
        cli("nextok-export", good, "out=.", cwd=here),
        2,
        "out=. is not empty and not a previous nextok export (it holds README.md)",
        "overwrite=true",
    )
    assert (here / "README.md").read_text() == "my project\n" and len(os.listdir(here)) == 1
    one_line_error(
        cli("nextok-export", good, "out=README.md", cwd=here), 2, "out=README.md is a file"
    )
    # overwrite=true writes into a foreign folder (a previous export is written over without it:
    # tests/hf/test_export_target.py, the same check export_hf makes)
    assert cli("nextok-export", good, "out=.", "overwrite=true", cwd=here).returncode == 0
    assert "tags: [nextok]" in (here / "README.md").read_text()
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        one_line_error(
            cli("nextok-export", good, f"out={ro}", cwd=here), 1, f"cannot write the export to {ro}"
        )


@contextlib.contextmanager
def read_only(folder):
    """``folder`` read-only: a read-only bind mount as root (which ignores permissions)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mount = ["mount", "--bind", str(folder), str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only folder (root without mount)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_resume_auto_refuses_a_checkpoints_file_instead_of_starting_fresh(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("oops")
    proc = cli("nextok-train", f"hydra.run.dir={run}", "resume=auto", cwd=tmp_path)
    one_line_error(proc, 2, f"resume=auto: {run / 'checkpoints'} is not a folder")
    assert (run / "checkpoints").read_text() == "oops"
