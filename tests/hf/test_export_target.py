"""export_hf writes only into its own folder: planted symlinks at predictable temp names are
never followed, and a folder that is not a previous export is refused."""

from __future__ import annotations

import os

import pytest

from nextok.hf import export_hf
from nextok.model import ModelConfig, Transformer

NAMES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "README.md",
]


def _model() -> Transformer:
    return Transformer(ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=16))


def test_export_never_follows_symlinks_planted_at_temp_names(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victim.chmod(0o600)
    out = tmp_path / "out"
    export_hf(_model(), out)  # a previous export: written over below
    for name in NAMES:
        (out / f".{name}.tmp-{os.getpid()}").symlink_to(victim)
    export_hf(_model(), out)
    assert victim.read_text() == "precious" and victim.stat().st_mode & 0o777 == 0o600
    assert all(not (out / n).is_symlink() for n in NAMES if (out / n).exists())
    assert (out / "config.json").stat().st_mode & 0o777 == 0o644


def test_export_refuses_a_foreign_folder_unless_overwrite(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(ValueError, match="not a previous nextok export \\(it holds README.md\\)"):
        export_hf(_model(), tmp_path)
    assert (tmp_path / "README.md").read_text() == "mine"
    (tmp_path / "config.json").write_text("{}")  # a config.json does not make it an export
    with pytest.raises(ValueError, match="it holds README.md"):
        export_hf(_model(), tmp_path)
    export_hf(_model(), tmp_path, overwrite=True)
    assert "tags: [nextok]" in (tmp_path / "README.md").read_text()
    export_hf(_model(), tmp_path)  # now a previous export
    (tmp_path / "train.py").write_text("")
    with pytest.raises(ValueError, match="it holds train.py"):
        export_hf(_model(), tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        export_hf(_model(), tmp_path / "train.py")
