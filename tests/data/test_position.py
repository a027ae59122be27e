"""nextok.data.position: the training loader's own resume position, counted as training
consumes batches (on a real Trainer, whatever it and the workers fetch ahead)."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset

from nextok.data import BlockSampler, LMDataModule, ResumableDataLoader, TokenBlockDataset
from nextok.data.position import position_state, read_position


def _loader(n_blocks: int = 10, **kw) -> ResumableDataLoader:
    ds = TokenBlockDataset(np.arange(n_blocks * 6, dtype=np.uint16), block_size=5)
    return ResumableDataLoader(ds, batch_size=2, sampler=BlockSampler(len(ds), seed=1), **kw)


def test_consumed_batches_are_the_position_and_an_epoch_end_resumes_at_the_next():
    loader = _loader()  # 5 batches per epoch
    for _ in range(3):
        loader.consumed()
    assert loader.state_dict() == position_state(0, 3, 1, 2)
    loader.consumed(), loader.consumed()
    assert loader.position() == (1, 0)  # the epoch's last batch: resume at the next epoch
    loader.sampler.set_epoch(1)  # the trainer starts epoch 1
    loader.consumed()
    assert loader.position() == (1, 1)


def test_state_round_trip_and_a_changed_batch_size_warns(caplog):
    state = position_state(1, 4, seed=3, batch_size=8)
    assert state == {"version": 1, "epoch": 1, "batches": 4, "seed": 3, "batch_size": 8}
    assert read_position(state, 8) == (1, 4) and not caplog.records
    with caplog.at_level(logging.WARNING):
        assert read_position(state, 16) == (1, 4)
    assert "approximate" in caplog.text


def test_loader_restarts_after_the_consumed_batches():
    full = [x[:, 0].tolist() for x, _ in _loader()]
    resumed = _loader()
    resumed.load_state_dict(position_state(0, 3, 1, 2))
    assert [x[:, 0].tolist() for x, _ in resumed] == full[3:]
    assert resumed.position() == (0, 3)  # and counts on from there
    resumed.consumed()
    assert resumed.position() == (0, 4)


class _Stream(IterableDataset):
    """Batches ``skip_batches, skip_batches + 1, ...`` of an endless stream (batch size 1)."""

    seed = 5

    def __init__(self) -> None:
        self.skip_batches = 0

    def __iter__(self):
        i = self.skip_batches
        while True:
            yield torch.tensor([i])
            i += 1


def test_a_stream_is_one_endless_epoch_resumed_by_skipping():
    loader = ResumableDataLoader(_Stream(), batch_size=1)
    loader.load_state_dict(position_state(0, 9, 5, 1))
    assert loader.dataset.skip_batches == 9 and int(next(iter(loader))) == 9
    loader.consumed()
    assert loader.state_dict() == position_state(0, 10, 5, 1)


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(max_steps: int, callbacks=()) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_on_a_trainer_the_position_is_what_training_consumed(tmp_path, jsonl_corpus, num_workers):
    """Lightning fetches one batch ahead and workers prefetch more: the saved position is still
    the batches training used (at an epoch's last batch: the next epoch)."""
    kw = dict(source="json", data_files=str(jsonl_corpus), vocab_size=300, block_size=16)
    kw.update(batch_size=8, num_workers=num_workers, run_dir=str(tmp_path), val_fraction=0.1)
    dm = LMDataModule(**kw)
    per_epoch = len(dm.train_dataloader())
    seen = {}

    class Saved(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen[trainer.global_step] = trainer.train_dataloader.position()

    _trainer(per_epoch + 2, [Saved()]).fit(_Tiny(), datamodule=LMDataModule(**kw))
    assert seen[3] == (0, 3)
    assert seen[per_epoch] == (1, 0)
    assert seen[per_epoch + 2] == (1, 2)


def test_a_module_that_replaces_the_batch_counter_is_refused(tmp_path, jsonl_corpus):
    class Transforms(_Tiny):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            return batch

        def validation_step(self, batch, batch_idx):
            return None

    kw = dict(source="json", data_files=str(jsonl_corpus), vocab_size=300, block_size=16)
    with pytest.raises(ValueError, match="Transforms overrides on_before_batch_transfer"):
        _trainer(1).fit(Transforms(), datamodule=LMDataModule(**kw))
    # validation alone reads no training position: the module may keep its hook
    validate = L.Trainer(accelerator="cpu", logger=False, limit_val_batches=1)
    validate.validate(Transforms(), datamodule=LMDataModule(**kw), verbose=False)
