"""Config nodes -> Lightning objects: loggers, callbacks and the Trainer.

Every object comes from a ``_target_`` node whose keys are its constructor arguments; this module
adds only what needs run-time facts (the wandb run id of the run dir, nextok's console callbacks,
the checkpoint I/O plugin).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from nextok.console import is_rank_zero
from nextok.io import atomic_write_text
from nextok.lit.callbacks import ModelCheckpoint, ModelSummaryWithFlops, RunProgressBar
from nextok.lit.checkpoint_io import AtomicCheckpointIO

WANDB_ID_FILE = "wandb_run_id.txt"


def wandb_run_id(run_dir: Path) -> str:
    """One wandb run id per run directory, so a resumed run continues the same wandb run."""
    f = run_dir / WANDB_ID_FILE
    if f.exists():
        return f.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if is_rank_zero():
        atomic_write_text(f, run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """One logger per non-null node of ``cfg.logger``; a failure names the logger."""
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        extra: dict[str, Any] = {}
        target = str(node.get("_target_", ""))
        if "WandbLogger" in target and node.get("id") is None:
            extra = {"id": wandb_run_id(run_dir), "resume": "allow"}
        if "MLFlowLogger" in target and str(node.get("tracking_uri") or "").startswith("file:"):
            # MLflow >= 3.7 refuses its file store unless opted in; a configured file: URI is
            # that opt-in (sqlite:///... or a server URI need nothing).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            logger = instantiate(node, **extra)
            if "WandbLogger" in target:
                _ = logger.experiment  # wandb.init now: a missing login fails here, named
            loggers.append(logger)
        except Exception as e:  # noqa: BLE001 - name the logger that failed
            # ValueError: a bad logger config (missing package, key, URI): one line, exit 2
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "API key" in why:
                why = (
                    "no W&B login: run `wandb login` (or set WANDB_API_KEY), or set "
                    "WANDB_MODE=offline to log locally (`wandb sync` uploads later)"
                )
            raise ValueError(f"could not create logger '{name}': {why}") from e
    return loggers


def build_callbacks(cfg: DictConfig) -> list:
    """One callback per non-null node of ``cfg.callbacks``."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]


def console_callbacks(cfg: DictConfig) -> list:
    """nextok's progress bar and model summary, where the trainer config enables them."""
    out: list = []
    if cfg.trainer.get("enable_progress_bar", True) is not False:
        out.append(RunProgressBar())
    if cfg.trainer.get("enable_model_summary", True) is not False:
        out.append(ModelSummaryWithFlops())
    return out


def build_trainer(
    cfg: DictConfig, run_dir: Path, loggers: list, extra_callbacks: list, resuming: bool = False
) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the configured callbacks, nextok's console callbacks,
    ``extra_callbacks`` (first: their hooks run before the configured ones') and
    (``atomic_checkpoints``) the atomic checkpoint writer. ``resuming``: the checkpoint callbacks
    expect their folder to hold checkpoints already."""
    plugins = [AtomicCheckpointIO()] if cfg.get("atomic_checkpoints", True) else []
    callbacks = build_callbacks(cfg)
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint):
            cb.resuming = resuming
    return instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[*extra_callbacks, *callbacks, *console_callbacks(cfg)],
        plugins=plugins,
        default_root_dir=str(run_dir),
    )
