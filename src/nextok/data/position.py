"""The exact data position: the training loader's own state, saved in checkpoints so a resumed
run reads the next batch it would have read (with or without DataLoader workers).

The position is ``(epoch, batches training consumed in that epoch)``. A loader's workers, and
the trainer's own look-ahead, fetch batches before training uses them, so what a loader has
produced is not what training has used: the data module calls :meth:`ResumableDataLoader.consumed`
once for every training batch as it is handed to the model. Lightning saves ``state_dict()`` of
a stateful training loader and hands it back to ``load_state_dict`` before iterating; the
sampler (:meth:`nextok.data.blocks.BlockSampler.set_resume`) or the stream (``skip_batches``)
then replays the position exactly. A stream is one endless epoch (epoch 0).
"""

from __future__ import annotations

import logging
from typing import Any

from torch.utils.data import DataLoader

from nextok.data.blocks import BlockSampler

log = logging.getLogger(__name__)

STATE_VERSION = 1


def position_state(epoch: int, batches: int, seed: int | None, batch_size: int) -> dict[str, Any]:
    """The checkpoint entry (its keys are part of the checkpoint format)."""
    return {
        "version": STATE_VERSION,
        "epoch": int(epoch),
        "batches": int(batches),
        "seed": seed,
        "batch_size": batch_size,
    }


def read_position(state: dict[str, Any], batch_size: int) -> tuple[int, int]:
    """``(epoch, batches)`` from a checkpoint entry (a changed batch size only warns)."""
    if state.get("batch_size", batch_size) != batch_size:
        log.warning("data.batch_size changed on resume; the data position is approximate")
    return int(state["epoch"]), int(state["batches"])


class ResumableDataLoader(DataLoader):
    """A training DataLoader that knows how many of its batches training consumed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch, self.batches = 0, 0

    def _current_epoch(self) -> int:
        """The epoch being iterated: the sampler's (the trainer sets it), 0 for a stream."""
        return self.sampler.epoch if isinstance(self.sampler, BlockSampler) else 0

    def consumed(self) -> None:
        """Training took one more batch of the current epoch."""
        epoch = self._current_epoch()
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, 0
        self.batches += 1

    def position(self) -> tuple[int, int]:
        """``(epoch, batches)`` to resume at; after an epoch's last batch: the next epoch."""
        if isinstance(self.sampler, BlockSampler) and self.batches >= len(self):
            return self.epoch + 1, 0
        return self.epoch, self.batches

    def _seed(self) -> int | None:
        return getattr(self.sampler, "seed", getattr(self.dataset, "seed", None))

    def state_dict(self) -> dict[str, Any]:
        return position_state(*self.position(), self._seed(), self.batch_size)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Start after the saved position's batches (the one route a resume takes)."""
        self.epoch, self.batches = read_position(state_dict, self.batch_size)
        if isinstance(self.sampler, BlockSampler):
            self.sampler.set_epoch(self.epoch)
            self.sampler.set_resume(self.epoch, self.batches * self.batch_size)
        else:  # a stream (one source or a mixture): one endless epoch
            self.dataset.skip_batches = self.batches


def count_training_batch(trainer: Any) -> None:
    """A training batch the model is about to receive counts as consumed in the training
    loader's position (``trainer``: Lightning's, or None outside a fit)."""
    if trainer is not None and trainer.training:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableDataLoader):
            loader.consumed()
