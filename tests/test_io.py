"""nextok.io: small files are written whole or not at all."""

from __future__ import annotations

import os

import pytest

from nextok.io import atomic_save, atomic_write, atomic_write_text


def test_writes_text_and_creates_the_folder(tmp_path):
    f = atomic_write_text(tmp_path / "a" / "b.txt", "héllo\n")
    assert f.read_bytes() == "héllo\n".encode() and os.listdir(f.parent) == ["b.txt"]


def test_replaces_an_existing_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("old")
    atomic_write_text(f, "new")
    assert f.read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("old")

    def half_then_fail(out):
        out.write(b"partial")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(f, half_then_fail)
    assert f.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


def test_atomic_save_for_writers_that_take_a_file_name(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_text("old")

    def save_then_fail(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space"):
        atomic_save(f, save_then_fail)
    assert f.read_text() == "old" and os.listdir(tmp_path) == ["model.safetensors"]
    atomic_save(f, lambda tmp: tmp.write_bytes(b"new"))
    assert f.read_bytes() == b"new" and os.listdir(tmp_path) == ["model.safetensors"]
