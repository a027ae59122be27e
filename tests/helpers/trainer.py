"""A quiet single-process CPU Trainer for unit tests (no logger, bar, summary or checkpoints)."""

from __future__ import annotations

import lightning as L


def quiet_trainer(tmp_path, **overrides) -> L.Trainer:
    """``L.Trainer`` with test defaults; ``overrides`` replace any of them."""
    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        limit_val_batches=0,
    )
    return L.Trainer(**{**args, **overrides})
