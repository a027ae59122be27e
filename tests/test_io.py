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


# ---------------------------------------------------------------- planted symlinks
def _outside(tmp_path):
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    victim.chmod(0o600)
    return victim


def _unchanged(victim):
    return victim.read_text() == "precious" and (victim.stat().st_mode & 0o777) == 0o600


def test_a_symlink_at_the_old_predictable_temp_name_is_not_followed(tmp_path):
    victim = _outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / f".{name}.tmp-{os.getpid()}").symlink_to(victim)
    atomic_write_text(out / "config.json", "{}", mode=0o644)
    atomic_save(out / "model.safetensors", lambda tmp: tmp.write_bytes(b"w"), mode=0o644)
    assert _unchanged(victim)
    assert (out / "config.json").read_text() == "{}" and not (out / "config.json").is_symlink()
    assert (out / "config.json").stat().st_mode & 0o777 == 0o644
    assert (out / "model.safetensors").read_bytes() == b"w"


def _plant(folder, victim, keep):
    """An attacker with write access to ``folder``: every temp entry (any name) is moved away and
    replaced by a symlink to ``victim`` (or to its folder)."""
    for p in folder.iterdir():
        if p.name in keep or p.is_symlink():
            continue
        moved = folder.parent / f"moved-{p.name}"
        p.rename(moved)
        p.symlink_to(victim.parent if moved.is_dir() else victim)


def test_temp_entries_swapped_for_symlinks_mid_write_are_never_followed(tmp_path):
    victim = _outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("old")

    def write(f):
        _plant(out, victim, {"config.json"})
        f.write(b"new")

    with pytest.raises(OSError, match="was replaced while"):
        atomic_write(out / "config.json", write, mode=0o644)
    assert _unchanged(victim) and (out / "config.json").read_text() == "old"

    def save(tmp):
        _plant(out, victim, {"config.json"})
        tmp.write_bytes(b"weights")

    atomic_save(out / "model.safetensors", save, mode=0o644)
    assert _unchanged(victim) and sorted(os.listdir(victim.parent)) == ["victim.txt"]
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert not (out / "model.safetensors").is_symlink()
