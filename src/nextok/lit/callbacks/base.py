"""The small base of nextok's callbacks that act after a training batch.

Lightning's ``on_train_batch_end`` passes five arguments; these callbacks read the trainer, the
module and the batch index only, so they implement :meth:`AfterBatch.after_batch` instead.
"""

from __future__ import annotations

from typing import Any

import lightning as L


class AfterBatch(L.Callback):
    """A callback whose per-batch work is :meth:`after_batch` (called after every micro-batch;
    callbacks that act once per optimizer step check ``is_accumulating`` themselves)."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.after_batch(trainer, pl_module, batch_idx)

    def after_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int) -> None:
        """The callback's work after training batch ``batch_idx``."""
        raise NotImplementedError
