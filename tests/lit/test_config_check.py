"""Config values are checked against the constructors' annotations before any work."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from nextok.cli._conf import conf_dir
from nextok.run.config_check import check_config, matches


def _cfg(*overrides: str):
    with initialize_config_dir(conf_dir(), version_base="1.3"):
        return compose("train", overrides=["run_dir=/tmp/unused", *overrides])


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=fast", "optim.lr='fast' is not a number"),
        ("trainer.max_steps=abc", "trainer.max_steps='abc' is not an integer"),
        ("model.n_layer=abc", "model.n_layer='abc' is not an integer"),
        ("data.batch_size=1.5", "data.batch_size=1.5 is not an integer"),
        ("module.compile=maybe", "module.compile='maybe' is not true/false"),
        (
            "callbacks.sampling.max_new_tokens=many",
            "callbacks.sampling.max_new_tokens='many' is not an integer",
        ),
        ("model.d_model=30", "model.d_model (30) must be divisible by model.n_head (4)"),
        # values the optimizer config's own checks refuse, before any data work
        ("optim=adamw optim.betas=[0.9,1.5]", "optim: optim.betas must be two numbers in [0, 1)"),
        (
            "optim=muon optim.ns_dtype=fp16",
            "optim: optim.ns_dtype must be auto, bfloat16 or float32",
        ),
        ("optim=muon optim.moe_experts=sgd", "optim: optim.moe_experts must be muon or adamw"),
        # ranges Lightning/PyTorch checked only after the tokenizer trained (or never)
        ("trainer.max_steps=-5", "trainer.max_steps=-5: expected -1 (no step limit) or a positive"),
        ("trainer.max_steps=0", "trainer.max_steps=0: expected -1 (no step limit) or a positive"),
        ("max_tokens=0", "max_tokens=0: expected a positive number of tokens or null"),
        ("data.num_workers=-1", "data.num_workers=-1: expected 0 (load in the main process)"),
        ("trainer.val_check_interval=1.5", "trainer.val_check_interval=1.5: expected a positive"),
        (
            "callbacks.last_checkpoint.every_n_train_steps=-1",
            "callbacks.last_checkpoint.every_n_train_steps=-1: expected 0 (off) or a positive",
        ),
    ],
)
def test_wrong_values_name_the_key(override, message):
    with pytest.raises(ValueError) as err:
        check_config(_cfg(*override.split()))
    assert str(err.value) == message or message in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=llama_1b"],
        ["experiment=tinystories"],
        ["logger=many"],
        ["trainer=fsdp_cpu"],
        ["trainer.max_time=00:00:01:00"],
        ["optim.lr=1"],
        ["model.vocab_size=4096"],
        ["data.streaming=true"],  # the task follows: streaming: ${data.streaming}
        ["data=mixture"],
        ["data=tinystories"],  # no stdlib in training: any held-out stdlib files are unseen
        ["optim=adamw"],  # the default's Muon-only values live in optim=muon_tiny, not the overlay
        ["optim=muon"],
    ],
)
def test_shipped_configs_pass(overrides):
    check_config(_cfg(*overrides))
    # ... and the check is live on each of them: one bad value in it is still refused
    with pytest.raises(ValueError, match="optim.lr='fast' is not a number"):
        check_config(_cfg(*overrides, "optim.lr=fast"))


def test_matches():
    assert matches(1, float) and matches(1.5, float) and not matches(True, float)
    assert matches(None, int) and matches("x", int | str) and not matches("x", int | None)
    assert matches([1], list[int]) and matches({"a": 1}, dict) and not matches("a", list)
    assert matches(object(), type) is None  # not understood: not checked


def test_moved_sampling_target_still_works(capsys):
    """A config naming the sampling callback's old path still builds the callback (with a
    notice) from the checked config, its checks still apply, and the given config is not
    written."""
    from hydra.utils import instantiate

    from nextok.lit.callbacks.sampling import SamplingCallback

    old = "callbacks.sampling._target_=nextok.lit.sampling.SamplingCallback"
    cfg = _cfg(old)
    checked = check_config(cfg)
    assert cfg.callbacks.sampling._target_ == "nextok.lit.sampling.SamplingCallback"
    assert isinstance(instantiate(checked.callbacks.sampling), SamplingCallback)
    assert "moved to nextok.lit.callbacks.SamplingCallback" in capsys.readouterr().out
    with pytest.raises(ValueError, match="max_new_tokens='many' is not an integer"):
        check_config(_cfg(old, "callbacks.sampling.max_new_tokens=many"))


@pytest.mark.parametrize(
    "node, old, new",
    [
        ("optim", "nextok.lit.optim.AdamWConfig", "nextok.optim.AdamWConfig"),
        ("optim", "nextok.lit.muon.MuonConfig", "nextok.optim.MuonConfig"),
        ("schedule", "nextok.lit.optim.ScheduleConfig", "nextok.optim.ScheduleConfig"),
    ],
)
def test_moved_optim_targets_still_work(capsys, node, old, new):
    """A config naming the optimizer/schedule classes where they lived in lit/ (a saved run
    config resumed with resume=auto) still builds them, with a notice naming the new home."""
    from hydra.utils import instantiate

    from nextok.lit.lightning_private import locate

    extra = ("optim=muon",) if "Muon" in old else ("optim=adamw",)
    cfg = _cfg(*extra, f"{node}._target_={old}")
    checked = check_config(cfg)
    assert cfg[node]._target_ == old
    assert isinstance(instantiate(checked[node]), locate(new))
    assert f"{node}._target_: {old} moved to {new}" in capsys.readouterr().out


def test_every_moved_target_names_a_class_that_exists():
    """Each old path is no longer importable and its new path is: the shim is needed and
    points somewhere real."""
    from nextok.lit.lightning_private import locate
    from nextok.run.config_check import MOVED_TARGETS

    for old, new in MOVED_TARGETS.items():
        assert callable(locate(new)), new
        with pytest.raises(ImportError):
            locate(old)


def test_sampling_callback_state_key_is_unchanged_by_the_move():
    """Lightning restores a callback's checkpointed state by its ``state_key`` (the class name):
    checkpoints written while the callback lived in lit/sampling.py resume into it."""
    from nextok.lit.callbacks.sampling import SamplingCallback

    assert SamplingCallback().state_key == "SamplingCallback"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["tasks.stdlib_next_line.streaming=false", "data.streaming=true"],
            "tasks.stdlib_next_line: streaming=False but data trains with streaming=True",
        ),
        (
            ["tasks.stdlib_next_line.val_fraction=0.05"],
            "tasks.stdlib_next_line: val_fraction=0.05 but data trains with val_fraction=0.01",
        ),
        (
            ["data=mixture", "+data.sources.code.val_fraction=0.02"],
            "val_fraction=0.01 but data.sources.code trains with val_fraction=0.02",
        ),
    ],
)
def test_a_task_holding_out_other_files_than_the_data_is_refused(overrides, message):
    with pytest.raises(ValueError) as err:
        check_config(_cfg(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, skipped",
    [
        ([], False),
        (["data=mixture"], False),  # a stdlib source: the task's held-out files are its
        (["data=local_text", "data.data_files=/x.txt"], True),
        (["data=tinystories"], True),
        (
            [
                "data=local_text",
                "data.data_files=/x.txt",
                "tasks.stdlib_next_line.corpus_only=false",
            ],
            False,
        ),
    ],
)
def test_the_stdlib_task_runs_by_default_only_with_its_corpus(overrides, skipped):
    from omegaconf import OmegaConf

    from nextok.evals.stdlib_task import skipped_for_data

    cfg = OmegaConf.to_container(_cfg(*overrides), resolve=True)
    assert skipped_for_data(cfg["tasks"]["stdlib_next_line"], cfg["data"]) is skipped


@pytest.mark.parametrize(
    "overrides, explicit, notice",
    [
        (
            ["model=gpt2_small"],
            ["model"],
            "model=gpt2_small: experiment=default sets model.block_size=128 (preset: 1024), "
            "model.tie_embeddings=false (preset: true), model.qk_norm=true (preset: false); add "
            "model.block_size=1024 model.tie_embeddings=true model.qk_norm=false to keep the "
            "preset's values",
        ),
        (
            [
                "model=gpt2_small",
                "model.block_size=64",
                "model.tie_embeddings=true",
                "model.qk_norm=false",
            ],
            ["model", "model.block_size", "model.tie_embeddings", "model.qk_norm"],
            None,
        ),
        (
            ["model=gpt2_small", "experiment=tinystories"],
            ["model"],
            "experiment=tinystories sets model.block_size=512 (preset: 1024), model.n_layer=8",
        ),
        (["model=llama_1b", "experiment=llama_1b"], ["model"], None),  # the overlay keeps it
        ([], [], None),  # the default run: no preset named
    ],
)
def test_a_named_model_preset_changed_by_the_experiment_is_reported(overrides, explicit, notice):
    from omegaconf import OmegaConf

    from nextok.run.preset_notice import preset_notice

    with initialize_config_dir(conf_dir(), version_base="1.3"):
        cfg = compose(
            "train", overrides=["run_dir=/tmp/unused", *overrides], return_hydra_config=True
        )
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    got = preset_notice(cfg.model, choices, explicit)
    assert got == notice if notice is None or notice.startswith("model=") else notice in got
