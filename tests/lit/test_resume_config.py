"""``resume=auto`` continues the saved run: the saved config is the base, a command may change
lengths, loggers and machine-local keys, and a changed data or model config is refused."""

from __future__ import annotations

import shutil

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nextok.cli._conf import conf_dir
from nextok.run.config import save_config
from nextok.run.resume_config import resumed_config

RUN = [
    "data=local_text",
    "data.data_files=/corpus/my notes.txt",
    "trainer.max_steps=50",
    "callbacks.sampling=null",
]


def _compose(run_dir, *overrides):
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("train", overrides=[f"run_dir={run_dir}", *overrides])


def _resume(run_dir, *overrides):
    overrides = [*overrides, "resume=auto"]
    return resumed_config(_compose(run_dir, *overrides), [f"run_dir={run_dir}", *overrides])


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    save_config(_compose(d, *RUN), d)
    return d


def test_a_bare_resume_continues_the_saved_run(run_dir):
    cfg, kept = _resume(run_dir)
    assert cfg.data.source == "text" and cfg.data.data_files == "/corpus/my notes.txt"
    assert cfg.trainer.max_steps == 50 and cfg.resume == "auto"
    assert cfg.callbacks.sampling is None  # a node the run set to null stays null
    assert {"data.source", "data.data_files", "trainer.max_steps", "callbacks.sampling"} <= set(
        kept
    )


def test_a_node_may_be_turned_off(run_dir):
    off, _ = _resume(run_dir, "callbacks.best_checkpoint=null")
    assert off.callbacks.best_checkpoint is None and off.callbacks.sampling is None
    assert off.callbacks.last_checkpoint.save_last is True


def test_lengths_loggers_and_machine_local_keys_may_change(run_dir):
    cfg, _ = _resume(
        run_dir, "trainer.max_steps=80", "logger=tensorboard", "data.num_workers=2", *RUN[:2]
    )
    assert (cfg.trainer.max_steps, cfg.data.num_workers) == (80, 2)
    assert "tensorboard" in cfg.logger and cfg.data.source == "text"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.vocab_size=600", "data.vocab_size"),
        ("model=llama_small", "model."),
        ("seed=1", "seed"),
    ],
)
def test_a_changed_data_or_model_config_is_refused(run_dir, override, key):
    with pytest.raises(ValueError, match=rf"^{key}.* would change the run in .*config\.yaml"):
        _resume(run_dir, override)


def test_a_moved_run_dir_resumes_where_it_is(run_dir, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    cfg, _ = _resume(moved)
    assert cfg.callbacks.last_checkpoint.dirpath == f"{moved}/checkpoints"
    assert cfg.data.run_dir == str(moved)


def test_no_saved_config_or_no_resume_leaves_the_config_alone(tmp_path, run_dir):
    fresh = _compose(tmp_path / "new", "resume=auto")
    assert resumed_config(fresh, ["resume=auto"])[0] is fresh
    plain = _compose(run_dir)
    assert resumed_config(plain, [])[0] is plain


def test_config_yaml_stays_and_each_resume_is_recorded_beside_it(run_dir):
    first = (run_dir / "config.yaml").read_text()
    cfg, _ = _resume(run_dir, "trainer.max_steps=80")
    assert save_config(cfg, run_dir, resuming=True) == run_dir / "config.resume-1.yaml"
    assert (run_dir / "config.yaml").read_text() == first
    assert OmegaConf.load(run_dir / "config.resume-1.yaml").trainer.max_steps == 80
    assert save_config(cfg, run_dir, resuming=True) == run_dir / "config.resume-2.yaml"
    # a fresh run started over the old one (no checkpoint resumed) is the dir's run now
    assert save_config(cfg, run_dir) == run_dir / "config.yaml"
    assert OmegaConf.load(run_dir / "config.yaml").trainer.max_steps == 80
