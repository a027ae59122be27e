"""nextok.distributed.ranks: the one data-parallel rank/size helper (fake trainers, no processes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nextok.distributed.ranks import data_parallel_rank_size, data_parallel_size, world_size


def _trainer(strategy, rank: int, world: int):
    return SimpleNamespace(strategy=strategy, global_rank=rank, world_size=world)


def test_no_trainer_and_no_process_group_is_one_rank():
    assert data_parallel_rank_size() == (0, 1) and data_parallel_size() == 1


def test_plain_strategy_uses_the_global_rank_and_world():
    assert data_parallel_rank_size(_trainer(SimpleNamespace(), 3, 4)) == (3, 4)


def test_sampler_kwargs_of_the_strategy_win_over_the_world():
    strategy = SimpleNamespace(distributed_sampler_kwargs={"rank": 1, "num_replicas": 2})
    assert data_parallel_rank_size(_trainer(strategy, 3, 4)) == (1, 2)


@pytest.mark.parametrize(("rank", "expected"), [(0, (0, 2)), (1, (0, 2)), (2, (1, 2)), (3, (1, 2))])
def test_tensor_parallel_ranks_share_one_data_rank(rank, expected):
    """World 4 with tensor-parallel size 2: the mesh is (data_parallel=2, tensor_parallel=2),
    row-major, so ranks 0,1 read shard 0 and ranks 2,3 shard 1."""
    assert data_parallel_rank_size(_trainer(SimpleNamespace(_tensor_parallel_size=2), rank, 4)) == (
        expected
    )


def test_a_strategy_whose_mesh_is_not_built_yet_falls_back_to_the_world():
    class NoMeshYet:
        _tensor_parallel_size = "auto"  # Lightning's ModelParallelStrategy before setup

        @property
        def distributed_sampler_kwargs(self):
            raise RuntimeError("Accessing the device mesh before processes have initialized")

    assert data_parallel_rank_size(_trainer(NoMeshYet(), 1, 2)) == (1, 2)


def test_world_size_counts_every_process():
    tp_trainer = _trainer(SimpleNamespace(_tensor_parallel_size=2), 0, 4)
    assert world_size(tp_trainer) == 4 and data_parallel_size(tp_trainer) == 2
    assert world_size() == 1
