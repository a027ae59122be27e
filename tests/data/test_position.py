"""nextok.data.position: the data position a checkpoint stores, from the trainer's counter."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np

from nextok.data import BlockSampler, ResumableDataLoader, TokenBlockDataset
from nextok.data.position import (
    apply_position,
    position_state,
    read_position,
    trainer_position,
)


def _trainer(epoch: int, current: int, total: int, n_batches):
    progress = SimpleNamespace(
        current=SimpleNamespace(processed=current), total=SimpleNamespace(processed=total)
    )
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(current_epoch=epoch, fit_loop=loop, num_training_batches=n_batches)


def test_mid_epoch_position_is_the_batches_of_this_epoch():
    assert trainer_position(_trainer(2, 5, 25, 10), streaming=False) == (2, 5)


def test_a_checkpoint_at_the_epoch_end_resumes_at_the_next_epoch():
    assert trainer_position(_trainer(2, 10, 30, 10), streaming=False) == (3, 0)


def test_a_stream_counts_total_batches_in_one_endless_epoch():
    assert trainer_position(_trainer(0, 7, 7, float("inf")), streaming=True) == (0, 7)


def test_state_round_trip_and_a_changed_batch_size_warns(caplog):
    state = position_state(1, 4, seed=3, batch_size=8)
    assert state == {"version": 1, "epoch": 1, "batches": 4, "seed": 3, "batch_size": 8}
    assert read_position(state, 8) == (1, 4) and not caplog.records
    with caplog.at_level(logging.WARNING):
        assert read_position(state, 16) == (1, 4)
    assert "approximate" in caplog.text


class _Owner:
    def __init__(self):
        self.loaded = None

    def state_dict(self):
        return position_state(0, 0, 0, 2)

    def load_state_dict(self, state):
        self.loaded = read_position(state, 2)

    @property
    def resume_position(self):
        return self.loaded


def test_loader_restarts_after_the_consumed_batches():
    ds = TokenBlockDataset(np.arange(60, dtype=np.uint16), block_size=5)  # 10 blocks
    sampler = BlockSampler(len(ds), shuffle=True, seed=1)
    full = [
        x[:, 0].tolist()
        for x, _ in ResumableDataLoader(_Owner(), ds, batch_size=2, sampler=sampler)
    ]
    resumed = ResumableDataLoader(
        _Owner(), ds, batch_size=2, sampler=BlockSampler(len(ds), shuffle=True, seed=1)
    )
    resumed.load_state_dict(position_state(0, 3, 1, 2))
    assert [x[:, 0].tolist() for x, _ in resumed] == full[3:]


def test_apply_position_sets_a_streams_skip():
    stream = SimpleNamespace(skip_batches=0)
    loader = SimpleNamespace(dataset=stream, sampler=None, batch_size=4)
    apply_position(loader, 0, 9)
    assert stream.skip_batches == 9
