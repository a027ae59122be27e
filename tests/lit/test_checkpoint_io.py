import os
import pickle

import pytest
import torch

from nextok.lit.checkpoint_io import AtomicCheckpointIO, atomic_torch_save


class _Unpicklable:
    """Fails half-way through serialisation, like a process killed during a save."""

    def __reduce__(self):
        raise pickle.PicklingError("simulated failure during save")


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    with pytest.raises(pickle.PicklingError):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000), "bad": _Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1  # old checkpoint intact
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temp file left behind


def test_save_replaces_and_loads(tmp_path):
    path = tmp_path / "sub" / "x.ckpt"
    atomic_torch_save({"a": 1}, path)
    atomic_torch_save({"a": 2}, path)
    assert AtomicCheckpointIO().load_checkpoint(path, weights_only=True)["a"] == 2


def test_temp_file_lives_next_to_target(tmp_path, monkeypatch):
    """The rename is only atomic within one filesystem: the temp file must be in the same dir."""
    seen = []
    real_replace = os.replace

    def spy(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        where = [os.readlink(f"/proc/self/fd/{fd}") for fd in (src_dir_fd, dst_dir_fd)]
        seen.append((os.path.join(where[0], src), os.path.join(where[1], dst)))
        return real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "replace", spy)
    atomic_torch_save({"a": 1}, tmp_path / "y.ckpt")
    assert [(os.path.dirname(a), b) for a, b in seen] == [(str(tmp_path), str(tmp_path / "y.ckpt"))]


def test_load_goes_through_the_shared_loader_and_names_a_sharded_folder(tmp_path):
    io = AtomicCheckpointIO()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint \\(zip archive expected"):
        io.load_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "last.ckpt").mkdir()
    with pytest.raises(ValueError, match="is a sharded \\(distributed\\) checkpoint folder"):
        io.load_checkpoint(tmp_path / "last.ckpt")
    io.save_checkpoint({"w": torch.ones(2)}, tmp_path / "ok.ckpt")
    assert torch.equal(io.load_checkpoint(tmp_path / "ok.ckpt")["w"], torch.ones(2))
