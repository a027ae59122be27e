"""``nextok-generate draft=...``: the same text as plain decoding, an acceptance line, and a
draft with another tokenizer (or a bad key) refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.checkpoints import write_checkpoint
from helpers.cli import cli, compose
from nextok.checkpoint.verify import add_checksums
from nextok.cli.errors import CliError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    write_checkpoint(path)
    return path


def edited(src: Path, dst: Path, edit) -> Path:
    """A copy of checkpoint ``src`` with ``edit(saved)`` applied (checksums renewed)."""
    saved = torch.load(src, weights_only=True)
    edit(saved)
    torch.save(add_checksums(saved), dst)
    return dst


ARGS = ("prompt=def ", "prompt=import os\nimport ", "max_new_tokens=24", "temperature=0")


@pytest.mark.parametrize("draft", ["self", "prompt_lookup"])
def test_greedy_text_equals_plain(ckpt, capsys, draft):
    from nextok.cli.generate import run

    literal = {"prompt": ["def ", "import os\nimport "]}
    run(compose("generate", f"ckpt={ckpt}", *ARGS[2:], "device=cpu"), literal)
    plain = capsys.readouterr().out
    name = ckpt if draft == "self" else draft
    run(compose("generate", f"ckpt={ckpt}", *ARGS[2:], "device=cpu", f"draft={name}"), literal)
    out, err = capsys.readouterr()
    assert out == plain
    assert f"draft={name}: accepted " in err and " proposed tokens (" in err
    if draft == "self":  # the target as its own draft: every proposal is accepted
        assert "(100.0%)" in err


def test_draft_with_another_tokenizer_is_one_line(ckpt, tmp_path):
    def swap_two_tokens(saved):
        tok = saved["nextok"]["tokenizer_json"]
        saved["nextok"]["tokenizer_json"] = (
            tok.replace('"def":', '"@@":')
            .replace('"import":', '"def":')
            .replace('"@@":', '"import":')
        )

    other = edited(ckpt, tmp_path / "other.ckpt", swap_two_tokens)
    r = cli(
        "nextok-generate",
        f"ckpt={ckpt}",
        "prompt=def ",
        "device=cpu",
        f"draft={other}",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith(
        f"nextok-generate: error: draft={other} has another tokenizer than ckpt={ckpt}: token id "
    )
    assert "in it, " in r.stderr and "in the target" in r.stderr


def test_refusals_name_the_key(ckpt, tmp_path):
    from nextok.cli.generate import run

    base = (f"ckpt={ckpt}", "device=cpu", "max_new_tokens=4")
    with pytest.raises(CliError, match=r"draft=.*missing.ckpt: checkpoint not found"):
        run(compose("generate", *base, f"draft={tmp_path / 'missing.ckpt'}"))
    with pytest.raises(CliError, match="num_speculative_tokens must be a positive integer"):
        run(compose("generate", *base, "draft=prompt_lookup", "num_speculative_tokens=0"))
    with pytest.raises(CliError, match=r"draft_confidence_threshold must be in \[0, 1\], got 1.5"):
        run(compose("generate", *base, f"draft={ckpt}", "draft_confidence_threshold=1.5"))
    with pytest.raises(CliError, match="prompt_lookup_max_ngram must be a positive integer"):
        run(compose("generate", *base, "draft=prompt_lookup", "prompt_lookup_max_ngram=0"))
    with pytest.raises(CliError, match="repetition_penalty is not supported with draft"):
        run(compose("generate", *base, "draft=prompt_lookup", "repetition_penalty=1.3"))

    def bigger_vocab(saved):
        cfg = dict(saved["nextok"]["model_config"], vocab_size=320)
        saved["nextok"]["model_config"] = cfg
        from nextok.model import ModelConfig, Transformer

        state = Transformer(ModelConfig.from_dict(cfg)).state_dict()
        saved["state_dict"] = {f"model.{k}": v for k, v in state.items()}

    padded = edited(ckpt, tmp_path / "padded.ckpt", bigger_vocab)  # same tokenizer, padded rows
    stats = run(
        compose("generate", *base, f"draft={padded}", "temperature=0"), {"prompt": ["def "]}
    )
    assert stats["tokens"] == 4


def test_hugging_face_folder_as_draft(ckpt, tmp_path, capsys):
    """The target exported to a Hugging Face folder drafts for itself: every token accepted."""
    from nextok.checkpoint import load_checkpoint
    from nextok.cli.generate import run
    from nextok.hf.folder import export_hf

    loaded = load_checkpoint(ckpt)
    folder = export_hf(loaded.model, tmp_path / "hf", loaded.tokenizer, loaded.special)
    literal = {"prompt": ["def "]}
    run(compose("generate", f"ckpt={ckpt}", *ARGS[2:], "device=cpu"), literal)
    plain = capsys.readouterr().out
    run(compose("generate", f"ckpt={ckpt}", *ARGS[2:], "device=cpu", f"draft={folder}"), literal)
    out, err = capsys.readouterr()
    assert out == plain
    assert f"draft={folder}: accepted " in err and "(100.0%)" in err
