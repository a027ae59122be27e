"""Log the tokens each mixture source has supplied (``train/tokens/<name>``)."""

from __future__ import annotations

import lightning as L
import torch

from nextok.lit.callbacks.base import AfterBatch
from nextok.lit.lightning_private import should_update_logs


class MixtureTokens(AfterBatch):
    """Logs ``train/tokens/<name>`` (all ranks together) at log steps when the data is a mixture.

    The counts come from the mixture's deterministic schedule and the batch position, so they are
    exact, need no communication or device sync, and continue across a resume. Without a
    mixture (no ``tokens_per_source`` on the datamodule) it does nothing.
    """

    def after_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int) -> None:
        counts = getattr(trainer.datamodule, "tokens_per_source", None)
        if counts is None or not should_update_logs(trainer):
            return
        tokens = counts(trainer.current_epoch, batch_idx + 1)
        metrics = {f"train/tokens/{name}": float(n) for name, n in tokens.items()}
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
