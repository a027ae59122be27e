"""Data-parallel rank and size: the one answer to "which shard of the data is mine?".

Under tensor parallelism the ranks of one tensor-parallel group read the same batch, so only the
data-parallel dimension counts: ``size = world / tensor_parallel_size`` and, with the mesh laid
out (data_parallel, tensor_parallel) as Lightning's ``ModelParallelStrategy`` builds it,
``rank = global_rank // tensor_parallel_size``. Duck-typed on the trainer (no Lightning import),
so the data pipeline, the callbacks and the LightningModule share it.
"""

from __future__ import annotations

from typing import Any

import torch


def data_parallel_rank_size(trainer: Any = None) -> tuple[int, int]:
    """(rank, size) among the ranks that see different data.

    With a trainer: a model-parallel strategy's tensor-parallel size (arithmetic, valid before
    and after its device mesh exists, and free of mesh slicing in the training step), else the
    strategy's sampler arguments (DDP: the global rank and world size). Without one:
    ``torch.distributed`` if initialised, else ``(0, 1)``."""
    if trainer is not None:
        strategy = trainer.strategy
        tp = getattr(strategy, "_tensor_parallel_size", None)
        if isinstance(tp, int) and tp > 0:  # mesh (data_parallel, tensor_parallel), row-major
            return int(trainer.global_rank) // tp, max(1, int(trainer.world_size) // tp)
        try:
            kwargs = getattr(strategy, "distributed_sampler_kwargs", None)
        except RuntimeError:  # a strategy that needs its process group first
            kwargs = None
        if kwargs and "rank" in kwargs and "num_replicas" in kwargs:
            return int(kwargs["rank"]), int(kwargs["num_replicas"])
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def data_parallel_size(trainer: Any = None) -> int:
    """The number of data-parallel ranks (see :func:`data_parallel_rank_size`)."""
    return data_parallel_rank_size(trainer)[1]


def world_size(trainer: Any = None) -> int:
    """All processes of the run (every parallel dimension): the trainer's, else
    ``torch.distributed``'s, else 1."""
    if trainer is not None:
        return int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1
