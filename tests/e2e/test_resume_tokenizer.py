"""Resuming into another run dir uses the checkpoint's tokenizer; a run dir whose tokenizer.json
is not the one the weights were trained with is refused in one line."""

from __future__ import annotations

import json

from helpers.cli import cli, metrics, ok, one_line_error, tiny_args


def test_resume_uses_the_checkpoints_tokenizer_or_refuses(tmp_path):
    a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    common = ("callbacks.sampling=null", f"data.cache_dir={cache}")
    ok(cli("nextok-train", *tiny_args(a, None, "trainer.max_steps=4", *common)))
    # ckpt_path into a new run dir: the checkpoint's tokenizer is used, none is trained
    proc = ok(
        cli(
            "nextok-train",
            *tiny_args(
                b,
                None,
                "trainer.max_steps=6",
                f"ckpt_path={a / 'checkpoints' / 'last.ckpt'}",
                *common,
            ),
        )
    )
    assert "using the tokenizer embedded in" in proc.stdout
    assert json.loads((b / "tokenizer.json").read_text()) == json.loads(
        (a / "tokenizer.json").read_text()
    )
    assert sorted(metrics(b)) == [4, 5]  # continued from step 4
    # a run dir whose tokenizer.json is another run's: refused in one line
    other = json.loads((a / "tokenizer.json").read_text())
    vocab = other["model"]["vocab"]
    k1, k2 = list(vocab)[300:302]
    vocab[k1], vocab[k2] = vocab[k2], vocab[k1]  # two ids swapped: silently wrong if accepted
    (a / "tokenizer.json").write_text(json.dumps(other))
    one_line_error(
        cli("nextok-train", *tiny_args(a, None, "trainer.max_steps=6", "resume=auto")),
        2,
        f"{a / 'tokenizer.json'} is not the tokenizer the weights in",
    )
