"""The run's plan: the composed config resolved once, never written; the tokenizer's source
decided in one place (nextok.run.plan, nextok.run.tokenizer_source)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from helpers.checkpoints import write_checkpoint
from helpers.cli import compose
from nextok.checkpoint import META_KEY
from nextok.data.tokenization.tokenizer import load_tokenizer, save_tokenizer, train_bpe
from nextok.run.config_check import check_config
from nextok.run.plan import resolve_plan
from nextok.run.tokenizer_source import tokenizer_source


def _cfg(run_dir: Path, *overrides: str):
    return compose("train", f"run_dir={run_dir}", "tasks=[]", *overrides)


def test_init_from_enters_the_plan_not_the_composed_config(tmp_path):
    """init_from's model config and tokenizer folder are the plan's; the composed config keeps
    its own values, and what follows the model (data.block_size) follows the source's."""
    ckpt = tmp_path / "src.ckpt"
    write_checkpoint(ckpt, block_size=64)
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, f"init_from={ckpt}")
    before = OmegaConf.to_yaml(cfg)
    plan = resolve_plan(check_config(cfg), [], run_dir)
    assert OmegaConf.to_yaml(cfg) == before
    assert plan.config.model.n_layer == 2 and plan.config.model.d_model == 32
    assert plan.config.data.block_size == 64 and plan.batch.block_size == 64
    assert plan.config.data.tokenizer_path == str(run_dir / "init_tokenizer")
    assert plan.tokenizer.kind == "init_from"
    assert (run_dir / "init_tokenizer" / "tokenizer.json").is_file()
    assert plan.plain("data", "tokenizer_path") == str(run_dir / "init_tokenizer")


def test_the_plan_is_read_only_and_hands_out_copies(tmp_path):
    plan = resolve_plan(check_config(_cfg(tmp_path)), [], tmp_path)
    with pytest.raises(ReadonlyConfigError):
        plan.config.model.n_layer = 7
    plain = plan.plain()
    plain["model"]["n_layer"] = 7
    assert plan.plain("model", "n_layer") == plan.config.model.n_layer != 7
    assert plan.ckpt_path is None and plan.init is None


def test_batch_arithmetic_is_the_plans(tmp_path):
    cfg = _cfg(tmp_path, "data.batch_size=8", "global_batch_size=32", "max_tokens=100000")
    batch = resolve_plan(check_config(cfg), [], tmp_path).batch
    accum = batch.accumulation(batch.block_size, 2)
    assert accum == 2
    assert batch.tokens_per_step(2, accum) == 8 * batch.block_size * 2 * 2
    assert batch.max_steps(batch.tokens_per_step(2, accum)) == -(-100000 // (32 * batch.block_size))


def _tok():
    return train_bpe(iter(["def f(x):\n    return x\n"] * 20), 300)


def test_tokenizer_source_order(tmp_path):
    """Run dir's tokenizer.json over training a new one; data.tokenizer_path over both; a
    resumed checkpoint's embedded tokenizer over all, written into a run dir without one."""
    assert tokenizer_source(tmp_path, None, None, None).kind == "train"
    save_tokenizer(_tok(), tmp_path / "tokenizer.json")
    assert tokenizer_source(tmp_path, None, None, None).kind == "run_dir"
    given = tokenizer_source(tmp_path, str(tmp_path / "tokenizer.json"), None, None)
    assert (given.kind, given.path) == ("tokenizer_path", str(tmp_path / "tokenizer.json"))

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    ckpt = tmp_path / "last.ckpt"
    torch.save({META_KEY: {"tokenizer_json": _tok().to_str()}}, ckpt)
    source = tokenizer_source(fresh, None, None, str(ckpt), verify=False)
    assert (source.kind, source.path) == ("checkpoint", None)
    assert load_tokenizer(fresh / "tokenizer.json").to_str() == _tok().to_str()
