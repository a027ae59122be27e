"""nextok-eval scores the held-out split the checkpoint's run trained without (``data_from``)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from helpers.cli import cli, ok, one_line_error
from nextok.checkpoint import META_KEY, safe_load


@pytest.fixture(scope="module")
def run(tiny_run):
    """The shared tiny run (tests/e2e/conftest.py): 3% of the files held out (the data group's
    default: 1%), and its final whole-split validation (logged last)."""
    rows = []
    for f in sorted(tiny_run["dir"].glob("csv/version_*/metrics.csv")):
        rows += [r for r in csv.DictReader(f.open()) if r.get("val/loss")]
    final = rows[-1]
    return {
        **tiny_run,
        "loss": float(final["val/loss"]),
        "tokens": int(float(final["val/tokens"])),
    }


def evaluate(ckpt, cache, *args: str) -> tuple[dict, str]:
    """nextok-eval's JSON result and its stderr (where the data line goes with json=true)."""
    proc = ok(
        cli(
            "nextok-eval", f"ckpt={ckpt}", "json=true", "tasks=[]", f"data.cache_dir={cache}", *args
        )
    )
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_checkpoint_records_the_runs_data_config(run):
    data = safe_load(run["ckpt"])[META_KEY]["data_config"]
    assert data["_target_"] == "nextok.data.LMDataModule"
    assert (data["source"], data["val_fraction"], data["seed"]) == ("stdlib", 0.03, 1337)
    assert data["block_size"] == 32 and data["val_batch_size"] == 64  # resolved values


def test_eval_reproduces_the_runs_final_val_loss_and_config_mode_differs(run):
    got, err = evaluate(run["ckpt"], run["cache"])
    assert "the training data config recorded in" in err and "val_fraction=0.03" in err
    assert got["data"].startswith("the training data config recorded in")  # in the JSON too
    assert got["tokens"] == run["tokens"]
    assert abs(got["loss"] - run["loss"]) < 1e-4
    # data_from=config: the data group's 1% split, another set of documents
    other, err = evaluate(run["ckpt"], run["cache"], "data_from=config")
    assert "data_from=config" in err and "val_fraction=0.01" in err
    assert other["tokens"] != run["tokens"] and other["loss"] != got["loss"]
    run["config_result"] = other


def test_eval_refuses_split_overrides_with_data_from_ckpt(run):
    proc = cli("nextok-eval", f"ckpt={run['ckpt']}", "tasks=[]", "data.val_fraction=0.01")
    one_line_error(proc, 2, "data.val_fraction=0.01", "data_from=config")


def test_checkpoint_without_a_recorded_data_config_falls_back_and_says_so(run, tmp_path):
    ckpt = safe_load(run["ckpt"])
    for key in ("data_config", "train_config"):  # as written before either was recorded
        ckpt[META_KEY].pop(key, None)
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    got, err = evaluate(old, run["cache"])
    assert f"{old} has no recorded data config (older checkpoint" in err
    assert "using data=stdlib" in err and "may not be the one the model was trained with" in err
    expected = (
        run.get("config_result") or evaluate(run["ckpt"], run["cache"], "data_from=config")[0]
    )
    assert (got["tokens"], got["loss"]) == (expected["tokens"], expected["loss"])


def test_a_recorded_config_this_nextok_cannot_build_is_one_line(run, tmp_path):
    """A record from another nextok version (here: a key no data module takes) is refused in
    one line pointing to data_from=config, not a traceback from deep inside Hydra."""
    ckpt = safe_load(run["ckpt"])
    ckpt[META_KEY]["data_config"]["renamed_key"] = 1
    odd = tmp_path / "odd.ckpt"
    torch.save(ckpt, odd)
    proc = cli("nextok-eval", f"ckpt={odd}", "tasks=[]", f"data.cache_dir={run['cache']}")
    one_line_error(proc, 2, "recorded training data config does not build", "data_from=config")
