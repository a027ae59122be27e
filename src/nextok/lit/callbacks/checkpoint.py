"""Lightning's ``ModelCheckpoint``, with ``last`` also written after the final step."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint

from nextok.lit.lightning_private import (
    is_accumulating,
)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, plus: ``last`` is also written after the final step.

    Lightning 2.6 writes ``last`` at train end only if it never wrote one, so a run stopped by
    ``max_steps``/``max_time`` between two save intervals would lose its final steps. Saving in
    ``on_train_end`` instead would record the epoch as finished (resume would start a new epoch
    with other data); saving in ``on_train_batch_end`` of the final step keeps the mid-epoch
    position, exactly like the periodic saves.

    ``resuming`` (set by :func:`nextok.run.build.build_trainer` for a resumed run): the
    checkpoint folder holds the run's own checkpoints, so Lightning's "Checkpoint directory ...
    exists and is not empty" warning is silenced; a fresh run in a used folder still gets it.
    """

    resuming = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        with warnings.catch_warnings():
            if self.resuming:
                warnings.filterwarnings(
                    "ignore", message=r"Checkpoint directory .* exists and is not empty"
                )
            super().setup(trainer, pl_module, stage)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final = trainer.should_stop or (0 < trainer.max_steps <= trainer.global_step)
        if (
            final
            and self.save_last
            and not is_accumulating(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:  # Lightning's train-end fallback ignores fast_dev_run
            super().on_train_end(trainer, pl_module)
