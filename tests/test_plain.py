"""nextok.plain: OmegaConf containers become plain Python, everything else passes through."""

from __future__ import annotations

from omegaconf import OmegaConf

from nextok.plain import to_plain


def test_containers_become_dicts_and_lists_resolved():
    cfg = OmegaConf.create({"a": [1, "${b}"], "b": 2})
    out = to_plain(cfg)
    assert out == {"a": [1, 2], "b": 2} and type(out) is dict and type(out["a"]) is list
    assert to_plain(cfg.a) == [1, 2] and type(to_plain(cfg.a)) is list


def test_other_values_are_unchanged():
    d = {"x": [1]}
    assert to_plain(d) is d and to_plain("s") == "s" and to_plain(None) is None
