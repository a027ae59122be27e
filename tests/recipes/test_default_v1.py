"""``experiment=default_v1`` is the default run from before the recipe search, unchanged: its
composed config holds every key of a frozen copy of what ``experiment=default`` composed then
(``default_v1_job.yaml``), with the same values. Keys added to nextok later (a new switch) are not
in the frozen copy; ``test_first_steps.py`` pins the recipe's first losses, which such a key
changes if it changes training."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from helpers.cli import cli, ok

FROZEN = Path(__file__).with_name("default_v1_job.yaml")


def leaves(node: object, prefix: str = "") -> dict[str, object]:
    """Every leaf of a nested dict/list as ``{"a.b.0": value}``."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in items:
        out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def test_default_v1_composes_the_frozen_default():
    proc = ok(cli("nextok-train", "experiment=default_v1", "--cfg", "job", timeout=120))
    composed = leaves(OmegaConf.to_container(OmegaConf.create(proc.stdout), resolve=False))
    frozen = leaves(yaml.safe_load(FROZEN.read_text()))
    assert composed.pop("name") == "default_v1"
    differing = {
        k: (v, composed.get(k, "<missing>"))
        for k, v in frozen.items()
        if composed.get(k, "<missing>") != v
    }
    assert not differing, differing
    assert (
        len(frozen) > 150
    )  # the whole run: model, data, optim, schedule, trainer, callbacks, tasks
