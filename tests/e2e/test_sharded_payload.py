"""A crafted sharded checkpoint folder runs nothing through any entry point
(real CLIs); each refuses in one line naming the file."""

from __future__ import annotations

import pytest

from helpers.cli import cli, one_line_error
from helpers.sharded_payload import sharded_folder


@pytest.mark.parametrize(
    ("name", "args", "needle"),
    [
        ("nextok-consolidate", ["{ck}"], "{ck}/.metadata: it asks for posix.mkdir"),
        ("nextok-train", ["hydra.run.dir={run}", "ckpt_path={ck}"], "{ck}/.metadata"),
        (
            "nextok-train",
            ["hydra.run.dir={run}", "trainer=fsdp_cpu", "resume=auto"],
            "{ck}/.metadata",
        ),
        (
            "nextok-train",
            ["hydra.run.dir={run}", "init_from={ck}"],
            "init_from={ck} is a sharded (distributed) checkpoint folder; consolidate it",
        ),
        ("nextok-generate", ["ckpt={ck}", "prompt=x"], "{ck}"),
        ("nextok-eval", ["ckpt={ck}"], "{ck}"),
        ("nextok-export", ["ckpt={ck}", "out={run}/hf"], "{ck}"),
    ],
    ids=[
        "consolidate",
        "train-ckpt_path",
        "train-resume-auto",
        "init_from",
        "generate",
        "eval",
        "export",
    ],
)
def test_crafted_sharded_folder_runs_nothing(tmp_path, name, args, needle):
    run = tmp_path / "run"
    ck = sharded_folder(run / "checkpoints" / "last.ckpt", tmp_path / "ran")
    fmt = {"ck": ck, "run": run}
    proc = cli(name, *(a.format(**fmt) for a in args), cwd=tmp_path)
    one_line_error(proc, 2, needle.format(**fmt))
    assert not (tmp_path / "ran").exists()


def test_a_payload_in_a_shard_value_runs_nothing_through_consolidate(tmp_path):
    ck = sharded_folder(tmp_path / "last.ckpt", tmp_path / "ran", where="value")
    proc = cli("nextok-consolidate", str(ck), cwd=tmp_path)
    one_line_error(proc, 2, f"refusing to load {ck}: its value 'state_dict.model.evil' holds")
    assert not (tmp_path / "ran").exists() and not (tmp_path / "last.consolidated.pt").exists()
