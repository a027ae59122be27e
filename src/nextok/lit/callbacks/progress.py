"""The progress bars, in one place: numbers refreshed at log steps only (no host sync per step);
the run's bar drops ``Epoch 0/-2`` (Lightning prints ``max_epochs - 1`` even when it is -1) and
``v_num``, and in a terminal writes one plain line per log step to ``train.log``
(:mod:`nextok.tee`)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress.rich_progress import (
    RichProgressBar as _LightningRichProgressBar,
)
from lightning.pytorch.callbacks.progress.tqdm_progress import TQDMProgressBar

from nextok.lit.lightning_private import (
    is_accumulating,
    is_log_step,
    rich_bar_settings,
    tqdm_bar_settings,
)
from nextok.tee import terminal_tee


class LogStepMetrics:
    """Progress-bar numbers refreshed at log steps only, training numbers as host floats.

    Lightning converts every metric logged with ``prog_bar=True`` to a Python number after every
    batch (one host-device sync each, also for values logged steps ago). So training logs none:
    the module and the throughput monitor put host floats, read at log steps, in
    ``pl_module.progress_bar`` (loss, tok/s), which this bar shows next to Lightning's own
    (validation loss), refreshed at log steps and after validation.
    """

    _shown: dict[str, Any] | None = None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        fresh = not trainer.training or is_log_step(trainer) or trainer.should_stop
        if self._shown is None or fresh:
            shown = super().get_metrics(trainer, pl_module)
            self._shown = {**shown, **getattr(pl_module, "progress_bar", {})}
        return self._shown


class ProgressBar(LogStepMetrics, TQDMProgressBar):
    """Lightning's tqdm bar, metrics refreshed at log steps (see :class:`LogStepMetrics`)."""


class RichProgressBar(LogStepMetrics, _LightningRichProgressBar):
    """Lightning's rich bar, metrics refreshed at log steps (see :class:`LogStepMetrics`)."""


def sync_free_progress_bar(bar: Any) -> L.Callback | None:
    """The log-step twin of Lightning's default bar ``bar`` (same settings); None for others."""
    if type(bar) is TQDMProgressBar:
        return ProgressBar(*tqdm_bar_settings(bar))
    if type(bar) is _LightningRichProgressBar:
        return RichProgressBar(*rich_bar_settings(bar))
    return None


class RunProgressBar(LogStepMetrics, _LightningRichProgressBar):
    """Lightning's rich progress bar without ``/-2`` after the epoch and without ``v_num``;
    its numbers refresh at log steps (no host sync per step, see ``LogStepMetrics``). In a
    terminal its redraws stay out of ``train.log``, which gets one plain line per log step."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        tee = terminal_tee()
        if tee is not None and not is_accumulating(trainer) and is_log_step(trainer):
            metrics = "  ".join(
                f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                for k, v in self.get_metrics(trainer, pl_module).items()
            )
            total = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
            tee.log_line(f"step {trainer.global_step}{total}  {metrics}".rstrip())

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            return super()._get_train_description(current_epoch)
        text = f"Epoch {current_epoch}"
        return f"{text:{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
