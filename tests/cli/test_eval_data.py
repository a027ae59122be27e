"""nextok-eval's ``data_from``: the checkpoint's recorded data config, or the ``data`` group."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nextok.cli._conf import conf_dir
from nextok.cli.eval_data import choose_data, recorded_data_config, split_overrides


def eval_cfg(*overrides: str):
    """The real conf/eval.yaml composed as nextok-eval composes it."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("eval", overrides=["ckpt=x.ckpt", *overrides])


def recorded(**changes):
    """A training run's resolved data config: conf/data/stdlib.yaml with the run's values."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        train = compose("train", overrides=["run_dir=/runs/a", "seed=7"])
    data = OmegaConf.to_container(train.data, resolve=True)
    data.update(changes)
    return data


def test_recorded_data_config_prefers_data_config_then_train_config():
    rec = recorded(val_fraction=0.05)
    assert recorded_data_config({"data_config": rec}) == rec
    # checkpoints written before data_config: the run's saved config has the same values
    assert recorded_data_config({"train_config": {"data": rec}}) == rec
    assert recorded_data_config({"model_config": {}}) is None
    assert recorded_data_config({"train_config": {"seed": 1}}) is None


def test_split_overrides_are_the_data_keys_that_change_documents():
    given = [
        "ckpt=a.ckpt",
        "data=tinystories",
        "data.val_fraction=0.05",
        "+data.sources.web.weight=0.2",
        "data.cache_dir=/tmp/c",
        "data.num_workers=2",
        "batch_size=8",
    ]
    assert split_overrides(given) == [
        "data=tinystories",
        "data.val_fraction=0.05",
        "+data.sources.web.weight=0.2",
    ]


def test_ckpt_mode_uses_the_recorded_split_and_tasks_follow_it():
    cfg = eval_cfg("data.cache_dir=/tmp/tok-cache")
    rec = recorded(val_fraction=0.05, streaming=True, tokenizer_path="/runs/a/tokenizer.json")
    line = choose_data(
        cfg, {"data_config": rec}, "a.ckpt", ["data.cache_dir=/tmp/tok-cache"], "stdlib"
    )
    assert "recorded in a.ckpt" in line and "val_fraction=0.05" in line and "seed=7" in line
    data = cfg.data
    assert (data.val_fraction, data.seed, data.streaming) == (0.05, 7, True)
    # machine-local keys and the ones nextok-eval sets come from the data group
    assert data.cache_dir == "/tmp/tok-cache" and data.tokenizer_path is None
    assert OmegaConf.to_container(data)["block_size"] == "${model.block_size}"
    # stdlib_next_line's held-out files are the same recorded split
    task = OmegaConf.to_container(cfg.tasks, resolve=True)["stdlib_next_line"]
    assert (task["seed"], task["val_fraction"], task["streaming"]) == (7, 0.05, True)


def test_ckpt_mode_refuses_data_overrides_in_one_line():
    cfg = eval_cfg("data.val_fraction=0.02")
    with pytest.raises(ValueError, match=r"^data\.val_fraction=0\.02: .*data_from=config"):
        choose_data(cfg, {"data_config": recorded()}, "a.ckpt", ["data.val_fraction=0.02"], None)
    cfg = eval_cfg("data.batch_size=8")
    with pytest.raises(ValueError, match=r"^data\.batch_size=8: nextok-eval takes .* batch_size=N"):
        choose_data(cfg, {"data_config": recorded()}, "a.ckpt", ["data.batch_size=8"], None)


def test_without_a_record_or_with_data_from_config_the_group_is_used():
    cfg = eval_cfg("data.val_fraction=0.02")
    line = choose_data(cfg, {"model_config": {}}, "old.ckpt", ["data.val_fraction=0.02"], "stdlib")
    assert line.startswith("data: old.ckpt has no recorded data config") and "data=stdlib" in line
    assert "may not be the one the model was trained with" in line
    assert cfg.data.val_fraction == 0.02 and cfg.data.seed == 1337

    cfg = eval_cfg("data_from=config", "data.val_fraction=0.02")
    line = choose_data(cfg, {"data_config": recorded()}, "a.ckpt", ["data.val_fraction=0.02"], None)
    assert "data_from=config" in line
    assert cfg.data.val_fraction == 0.02 and cfg.data.seed == 1337


def test_bad_data_from_is_one_line():
    cfg = eval_cfg("data_from=run")
    with pytest.raises(
        ValueError, match=r"data_from must be one of \['ckpt', 'config'\], got 'run'"
    ):
        choose_data(cfg, {}, "a.ckpt", [], None)


def test_a_mixture_whose_stdlib_source_holds_out_other_files_than_the_task_is_refused():
    """The task's keys interpolate the top-level data keys; a mixture's stdlib source may
    override them: scoring would then use files that source trained on."""
    from nextok.evals.stdlib_task import check_task_specs

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        train = compose(
            "train",
            overrides=[
                "run_dir=/runs/a",
                "data=mixture",
                "+data.sources.code.val_fraction=0.05",
                "tasks.stdlib_next_line.val_fraction=0.05",
            ],
        )
    rec = OmegaConf.to_container(train.data, resolve=True)
    cfg = eval_cfg()
    choose_data(cfg, {"data_config": rec}, "a.ckpt", [], "stdlib")
    data = OmegaConf.to_container(cfg.data, resolve=True)
    with pytest.raises(ValueError, match="but data.sources.code trains with val_fraction=0.05"):
        check_task_specs(OmegaConf.to_container(cfg.tasks, resolve=True), data)
    ok = eval_cfg("tasks.stdlib_next_line.val_fraction=0.05")
    choose_data(ok, {"data_config": rec}, "a.ckpt", [], "stdlib")
    check_task_specs(
        OmegaConf.to_container(ok.tasks, resolve=True),
        OmegaConf.to_container(ok.data, resolve=True),
    )
