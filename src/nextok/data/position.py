"""The exact data position, saved in checkpoints so a resumed run reads the next batch it would
have read (with or without DataLoader workers).

The position is ``(epoch, batches consumed in that epoch)``, taken from the trainer's batch
counter, not from the loader: a loader's workers prefetch ahead of training, so what a loader
has produced is not what training has used. The samplers and streams replay it exactly
(:meth:`nextok.data.blocks.BlockSampler.set_resume`, ``skip_batches`` of the streams).
Lightning saves ``state_dict()`` of a stateful training loader and restores it before iterating,
which is all :class:`ResumableDataLoader` adds to ``torch.utils.data.DataLoader``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from torch.utils.data import DataLoader

from nextok.data.blocks import BlockSampler

log = logging.getLogger(__name__)

STATE_VERSION = 1


def trainer_position(trainer: Any, streaming: bool) -> tuple[int, int]:
    """``(epoch, batches)`` training has consumed; a checkpoint saved at an epoch's end resumes
    at the start of the next. A stream is one endless epoch, counted in total batches."""
    epoch = trainer.current_epoch
    progress = trainer.fit_loop.epoch_loop.batch_progress
    batches = progress.total.processed if streaming else progress.current.processed
    n = trainer.num_training_batches
    if isinstance(n, int) and batches >= n:
        epoch, batches = epoch + 1, 0
    return int(epoch), int(batches)


def position_state(epoch: int, batches: int, seed: int, batch_size: int) -> dict[str, Any]:
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


def apply_position(loader: DataLoader, epoch: int, batches: int) -> None:
    """Make ``loader`` start after ``batches`` batches of ``epoch``."""
    if hasattr(loader.dataset, "skip_batches"):  # a stream (one source or a mixture)
        loader.dataset.skip_batches = batches
    elif isinstance(loader.sampler, BlockSampler):
        loader.sampler.set_epoch(epoch)
        loader.sampler.set_resume(epoch, batches * loader.batch_size)


class PositionOwner(Protocol):
    """What :class:`ResumableDataLoader` needs of its data module."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...

    @property
    def resume_position(self) -> tuple[int, int] | None: ...


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position lives in Lightning checkpoints, via its data module."""

    def __init__(self, datamodule: PositionOwner, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._datamodule = datamodule

    def state_dict(self) -> dict[str, Any]:
        return self._datamodule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._datamodule.load_state_dict(state_dict)
        epoch, batches = self._datamodule.resume_position
        apply_position(self, epoch, batches)
