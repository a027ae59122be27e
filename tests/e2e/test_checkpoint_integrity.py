"""Through the real commands: an ``optim.lr=1e6`` run never writes a
checkpoint of non-finite weights, and a checkpoint with a flipped byte or NaN weights is refused
in one line by generate, eval, export and resume."""

from __future__ import annotations

import pytest
import torch

from helpers.cli import cli, ok, one_line_error, tiny_args
from nextok.checkpoint.verify import CHECKSUMS


def _finite(path) -> bool:
    sd = torch.load(path, weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """``optim.lr=1e6``, a checkpoint after every step: step 2's loss is finite but its gradient
    norm is NaN (on these settings), so the NaN update used to be saved at step 3."""
    root = tmp_path_factory.mktemp("diverged")
    run = root / "run"
    args = tiny_args(
        run,
        None,
        "optim=adamw",  # AdamW's blow-up, as these settings were measured
        "optim.lr=1e6",
        "schedule.warmup_steps=0",
        "callbacks.sampling=null",
        "callbacks.best_checkpoint=null",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        f"data.cache_dir={root / 'cache'}",
        "tasks=[]",
    )
    proc = cli("nextok-train", *args)
    return run, args, proc


def test_a_diverged_run_stops_and_saves_no_nonfinite_weights(diverged):
    run, _, proc = diverged
    line = one_line_error(proc, 3, "not finite at step")
    assert "training loss or gradient norm is not finite at step 2" in line
    saved = sorted((run / "checkpoints").glob("*.ckpt"))
    assert saved and all(_finite(p) for p in saved)


def test_skip_drops_the_diverging_steps_and_finishes(diverged, tmp_path):
    _, args, _ = diverged
    run = tmp_path / "skip"
    args = [a if not a.startswith("hydra.run.dir=") else f"hydra.run.dir={run}" for a in args]
    proc = ok(cli("nextok-train", *args, "module.on_nonfinite=skip"))
    assert "skipped" in proc.stdout and "non-finite" in proc.stdout
    assert _finite(run / "checkpoints" / "last.ckpt")


def _flipped(src, dst):
    ck = torch.load(src, weights_only=True)
    w = ck["state_dict"]["model.blocks.0.mlp.fc.weight"]
    data = bytearray(src.read_bytes())
    needle = w.contiguous().view(torch.uint8).numpy().tobytes()[:64]
    at = data.find(needle)
    assert at > 0
    data[at + 5] ^= 0x04
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("nextok-generate", ["ckpt={ck}", "prompt=x"]),
        ("nextok-eval", ["ckpt={ck}", "tasks=[]"]),
        ("nextok-export", ["ckpt={ck}", "out={tmp}/hf"]),
        ("nextok-train", ["hydra.run.dir={tmp}/resumed", "ckpt_path={ck}"]),
        ("nextok-train", ["hydra.run.dir={tmp}/init", "init_from={ck}"]),
    ],
    ids=["generate", "eval", "export", "resume", "init_from"],
)
def test_a_flipped_byte_is_refused_naming_the_tensor(diverged, tmp_path, name, args):
    run, _, _ = diverged
    ck = _flipped(run / "checkpoints" / "last.ckpt", tmp_path / "flipped.ckpt")
    proc = cli(name, *(a.format(ck=ck, tmp=tmp_path) for a in args), cwd=tmp_path)
    one_line_error(
        proc, 2, "tensor state_dict/model.blocks.0.mlp.fc.weight does not match its checksum"
    )
    assert not (tmp_path / "hf").exists()


def test_nan_weights_of_an_older_checkpoint_are_refused(diverged, tmp_path):
    run, _, _ = diverged
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    del ck["nextok"][CHECKSUMS]  # as written before checksums existed
    ck["state_dict"]["model.blocks.0.mlp.fc.weight"][0, :4] = float("nan")
    torch.save(ck, tmp_path / "nan.ckpt")
    proc = cli("nextok-export", f"ckpt={tmp_path / 'nan.ckpt'}", f"out={tmp_path / 'hf'}")
    one_line_error(proc, 2, "4 of", "weights in blocks.0.mlp.fc.weight are not finite")
    assert "records no checksums" in proc.stderr and not (tmp_path / "hf").exists()
