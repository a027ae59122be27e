"""nextok.console.say: every nextok status line has one prefix and is printed once (rank 0)."""

from __future__ import annotations

import sys

import pytest
from lightning.fabric.utilities.rank_zero import rank_zero_only

from nextok.console import is_rank_zero, say


@pytest.fixture
def rank(monkeypatch):
    def set_rank(r: int) -> None:
        monkeypatch.setattr(rank_zero_only, "rank", r)

    return set_rank


def test_rank_zero_prints_once_with_the_prefix(capsys, rank):
    rank(0)
    assert is_rank_zero()
    say("run dir: runs/x")
    say("oops", file=sys.stderr)
    out = capsys.readouterr()
    assert (out.out, out.err) == ("[nextok] run dir: runs/x\n", "[nextok] oops\n")


def test_other_ranks_are_silent_unless_asked(capsys, rank):
    rank(1)
    assert not is_rank_zero()
    say("rank 1 speaks")
    assert capsys.readouterr().out == ""
    say("SIGTERM: stopped", all_ranks=True)
    assert capsys.readouterr().out == "[nextok] SIGTERM: stopped\n"


def test_via_another_printer(rank):
    rank(0)
    got: list[str] = []
    say("step 3: val/loss 4.2", via=got.append)
    assert got == ["[nextok] step 3: val/loss 4.2"]
