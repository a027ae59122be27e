"""``prompt=``/``stop=`` taken out of argv before Hydra: any text, exactly as the shell passed it."""

from __future__ import annotations

import io

import pytest

from nextok.cli.literal_args import read_prompt_file, split_literal_args, unescape


@pytest.mark.parametrize(
    "text",
    [
        "def main(",
        "f(x, y)",
        "a=b",
        "[1, 2]",
        "{'k': 3}",
        "x: int",
        "# note",
        "'q' \"qq\"",
        "é ∑ 日本",
        "",
        "=leading",
        "${oc.env:HOME}",
        "null",
        "  padded  ",
    ],
)
def test_values_are_taken_verbatim(text):
    rest, found = split_literal_args(["ckpt=x.ckpt", f"prompt={text}", "top_k=5", f"stop={text}"])
    assert rest == ["ckpt=x.ckpt", "top_k=5"]
    assert found == {"prompt": [text], "stop": [text]}


def test_repeated_keys_and_plus_prefix():
    rest, found = split_literal_args(
        ["prompt=a", "+prompt=b", "stop=x", "++stop=y", "prompt_file=-"]
    )
    assert found == {"prompt": ["a", "b"], "stop": ["x", "y"]}
    assert rest == ["prompt_file=-"]  # prompt_file is not free text: Hydra parses it


def test_unescape():
    assert unescape(r"a\nb\tc") == "a\nb\tc"
    assert unescape(r"keep \x and \\n") == "keep \\x and \\n"
    assert unescape("trailing \\") == "trailing \\"


def test_prompt_file_from_stdin(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.stdin", io.StringIO("def \n\n  \nclass A:\\n    x\n"))
    assert read_prompt_file("-") == ["def ", "class A:\n    x"]
    f = tmp_path / "p.txt"
    f.write_text("import \n", encoding="utf-8")
    assert read_prompt_file(str(f)) == ["import "]
