"""The training run: a composed Hydra config -> data, module, Trainer -> fit -> final validation.

Kept apart from the Hydra entry point (``nextok.cli.train``) so it can be called with any
``DictConfig`` (tests, notebooks): :func:`run_training`. It reads the config in one direction:
checked (:mod:`nextok.run.config_check`), resolved once into a frozen plan
(:mod:`nextok.run.plan`: the checkpoint to resume, ``init_from``, the tokenizer's source, the
batch arithmetic), then objects built from the plan (:mod:`nextok.run.build`), fit, and the
summary (:mod:`nextok.run.finish`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from nextok.console import is_rank_zero, say
from nextok.distributed.ranks import data_parallel_size
from nextok.lit.callbacks import UnigramBaseline
from nextok.lit.lightning_private import set_max_steps
from nextok.lit.module import LMModule
from nextok.run.build import build_loggers, build_trainer
from nextok.run.config import print_config, redact, resolve_model_config, save_config
from nextok.run.config_check import check_config
from nextok.run.finish import summary, validate_whole_split
from nextok.run.plan import RunPlan, resolve_plan
from nextok.run.preset_notice import run_preset_notice
from nextok.run.quiet import quiet_lightning
from nextok.run.run_dir import RunState, run_dir_session
from nextok.run.signals import GracefulStop, SignalGuard
from nextok.tee import tee_console


def run_training(cfg: DictConfig, model_overrides: list[str] | None = None) -> dict[str, float]:
    """Fit a model as ``cfg`` describes; return the final callback metrics.

    ``model_overrides``: the ``model.*`` keys the user set explicitly (checked against
    ``init_from``'s config; the CLI passes Hydra's command-line overrides). Config values and
    the model config are checked before anything is written or trained; the run dir is locked
    for this process (rank 0) and removed again if it was new and the run fails before training
    starts. ``cfg`` is only read: the run follows its plan (:mod:`nextok.run.plan`)."""
    _one_log_handler()
    quiet_lightning()
    run_dir = Path(cfg.run_dir)
    rank0 = is_rank_zero()
    # the guard first: a signal in any later phase stops the run as nextok.run.signals says
    with SignalGuard() as guard, run_dir_session(run_dir, rank0) as state:
        checked = check_config(cfg)
        restore = tee_console(run_dir) if rank0 else None
        try:
            plan = resolve_plan(checked, model_overrides or [], run_dir, writer=rank0)
            return _run(plan, rank0, state, guard)
        finally:
            if restore is not None:
                restore()


def _one_log_handler() -> None:
    """Lightning adds its own stderr handler to the ``lightning`` logger even when the root logger
    has one (Hydra's console + train.log): every message would print twice."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()


def _run(plan: RunPlan, rank0: bool, state: RunState, guard: SignalGuard) -> dict[str, float]:
    cfg, run_dir, ckpt_path, init = plan.config, plan.run_dir, plan.ckpt_path, plan.init
    if rank0:
        if cfg.get("print_config", False):
            print_config(cfg)
        save_config(cfg, run_dir, resuming=ckpt_path is not None)
    L.seed_everything(cfg.seed, workers=True)

    # Data first: the tokenizer decides the vocabulary.
    datamodule, special = prepare_data(cfg, run_dir, rank0)
    model_config = resolve_model_config(cfg, datamodule.vocab_size)
    datamodule.validate_model(model_config.vocab_size, model_config.block_size)

    export_info: dict[str, Any] = {}
    if init is not None:
        export_info.update(
            init_from=init.path, hf_family=init.hf_family, hf_generation=init.hf_generation
        )
        if ckpt_path is not None:
            say(f"init_from ignored: resuming from {ckpt_path}")
    if rank0:
        export_info["train_config"] = redact(plan.plain())
    init_state = None
    if init is not None and ckpt_path is None:
        init_state, init.state_dict = init.state_dict, {}  # one reference only
    build_module = instantiate(cfg.module, _partial_=True)  # the config's values, then ours
    module: LMModule = build_module(
        model_config=model_config,
        optim=instantiate(cfg.optim),
        schedule=instantiate(cfg.schedule),
        seed=cfg.seed,
        tokenizer=datamodule.tokenizer,
        special_tokens=special,
        data_config=redact(plan.plain("data")),
        export_info=export_info,
        init_state=init_state,
        val_scope=periodic_val_scope(datamodule),
    )
    loggers = build_loggers(cfg, run_dir)
    # Ctrl-C / SIGTERM: finish the step, save last.ckpt, exit 130/143; the run dir is kept once
    # training has begun (start-up lasts until the first batch: data setup errors still count)
    graceful = GracefulStop(guard, started=lambda: setattr(state, "started", True))
    trainer = build_trainer(cfg, run_dir, loggers, [graceful], resuming=ckpt_path is not None)

    batch = plan.batch
    dp = data_parallel_size(trainer)
    accum = batch.accumulation(model_config.block_size, dp)
    trainer.accumulate_grad_batches = accum
    tokens_per_step = batch.tokens_per_step(dp, accum)
    if (steps := batch.max_steps(tokens_per_step)) is not None:
        set_max_steps(trainer, steps)
    say(f"run dir: {run_dir}")
    say(
        f"model: {module.model_config.n_layer} layers, "
        f"d_model {model_config.d_model}, vocab {model_config.vocab_size}, block "
        f"{model_config.block_size}; world size {trainer.world_size} (data parallel {dp}), "
        f"micro-batch {batch.micro}, "
        f"grad accumulation {accum} -> {tokens_per_step} tokens/step; max_steps "
        f"{trainer.max_steps}"
    )
    if rank0 and (notice := run_preset_notice(cfg, list(plan.model_overrides))):
        say(notice)
    hparams = redact(plan.plain())
    hparams["resolved"] = {
        "vocab_size": model_config.vocab_size,
        "accumulate_grad_batches": accum,
        "tokens_per_step": tokens_per_step,
        "max_steps": trainer.max_steps,
    }
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if guard.signum is not None:  # recorded by the guard but not yet acted on
        raise guard.stop_now()
    val_loss = validate_whole_split(trainer, module, datamodule)
    if rank0:
        baseline = next(
            (c.baseline for c in trainer.callbacks if isinstance(c, UnigramBaseline)), None
        )
        for line in summary(trainer, module, val_loss, baseline):
            say(line)
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if getattr(v, "numel", lambda: 1)() == 1
    }


# ---------------------------------------------------------------------- data
def prepare_data(cfg: DictConfig, run_dir: Path, rank0: bool) -> tuple[Any, Any]:
    """The datamodule with its tokenizer ready, and the tokenizer's special tokens.

    This is the one place the tokenizer is prepared: rank 0 loads or trains it and writes the run
    dir's tokenizer folder, the other ranks wait for that file (no process group exists yet) and
    load it. Lightning's prepare_data inside fit then finds it there and only fills the token
    cache (nextok.data.tokenization.run_tokenizer)."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_tokenizer(writer=rank0, save_dir=run_dir)
    return datamodule, datamodule.special_tokens


def periodic_val_scope(datamodule: Any) -> str:
    """How much of the held-out split the periodic validations cover (printed with each)."""
    n = getattr(datamodule, "max_val_batches", None)
    if n is None:
        return "the whole held-out split"
    return f"a fixed subset of the held-out split (its first {n} batches per rank)"
