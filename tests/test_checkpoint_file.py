"""A file that is not a checkpoint is named for what it is not, in one line, by the one shared loader (``safe_load``) every entry point uses."""

from __future__ import annotations

import pytest
import torch

from nextok.checkpoint import load_checkpoint, safe_load


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.randn(64, 64)}, "nextok": {}}, path)
    return path


def test_text_file_empty_file_and_truncated_archive(tmp_path, saved):
    text = tmp_path / "notes.txt"
    text.write_text("every run of mine\n")
    with pytest.raises(
        ValueError, match="not a PyTorch checkpoint \\(zip archive expected; a text file\\)"
    ):
        safe_load(text)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty file \\(0 bytes\\)"):
        safe_load(empty)
    data = saved.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"cut.ckpt: truncated: {len(data) // 2} bytes and no zip"):
        safe_load(cut)
    cut.write_bytes(data[:-10])  # the directory record itself cut
    with pytest.raises(ValueError, match="truncated"):
        safe_load(cut)
    binary = tmp_path / "noise.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="zip archive expected; it starts with"):
        safe_load(binary)
    assert set(safe_load(saved)) == {"state_dict", "nextok"}


def test_damaged_inside_the_archive_is_one_line(tmp_path, saved):
    data = bytearray(saved.read_bytes())
    start = data.find(b"PK\x01\x02")  # the central directory: point its first record elsewhere
    data[start + 42 : start + 46] = (10**6).to_bytes(4, "little")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad.ckpt: damaged"):
        safe_load(bad)


def test_a_folder_that_is_no_checkpoint_is_not_called_sharded(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(IsADirectoryError, match="is a folder, not a checkpoint") as err:
        load_checkpoint(tmp_path)
    assert "sharded (distributed) checkpoint directory" not in str(err.value)
    (tmp_path / ".metadata").write_bytes(b"x")
    with pytest.raises(IsADirectoryError, match="sharded \\(distributed\\) checkpoint directory"):
        load_checkpoint(tmp_path)
