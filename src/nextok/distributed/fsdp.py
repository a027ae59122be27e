"""FSDP2 (``fully_shard``) for :class:`~nextok.model.Transformer`, after optional tensor parallelism.

Each transformer block is its own FSDP unit (only one block's full weights exist at a time), then
the root (embeddings, final norm, LM head). The same code runs on GPUs (NCCL) and on CPU (gloo),
which is how it is tested.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from nextok.distributed.tensor_parallel import apply_tensor_parallel, fsdp_placement
from nextok.dtypes import as_dtype

DP_DIM, TP_DIM = "data_parallel", "tensor_parallel"


def submesh(mesh, name: str):
    """The named dimension of a device mesh; a plain 1-D mesh is the data-parallel mesh."""
    names = mesh.mesh_dim_names or ()
    if name in names:
        return mesh[name]
    if len(names) <= 1 and name == DP_DIM:
        return mesh
    return None


def has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def parallelize(
    model: nn.Module,
    device_mesh,
    *,
    mp_param_dtype: str | torch.dtype | None = None,
    reduce_dtype: str | torch.dtype | None = torch.float32,
    reshard_after_forward: bool = True,
    tensor_parallel: bool = True,
) -> nn.Module:
    """Apply tensor parallelism (if the mesh has a ``tensor_parallel`` dim > 1), then FSDP2.

    mp_param_dtype: dtype of the gathered parameters used in forward/backward (bf16 on GPU); the
        sharded fp32 master weights and the optimizer stay fp32. None keeps fp32 everywhere.
    reduce_dtype: dtype of the gradient reduce-scatter (fp32 keeps the sum exact-ish in bf16 runs).
    reshard_after_forward: free each block's gathered weights after its forward (ZeRO-3 memory);
        False keeps them until backward (ZeRO-2-like: less communication, more memory).
    A model built on the meta device (large models) is materialised shard by shard on the mesh's
    device and initialised with ``model.init_weights()``; no rank ever holds the full weights.
    Returns the same module, modified in place.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(
            f"parallelize expects a nextok Transformer (with .blocks), got {type(model).__name__}"
        )
    tp_mesh = submesh(device_mesh, TP_DIM)
    if tensor_parallel and tp_mesh is not None and tp_mesh.size() > 1:
        apply_tensor_parallel(model, tp_mesh)

    dp_mesh = submesh(device_mesh, DP_DIM)
    if dp_mesh is None:
        raise ValueError(
            f"device mesh {device_mesh.mesh_dim_names} has no '{DP_DIM}' dimension to shard over"
        )
    policy = MixedPrecisionPolicy(
        param_dtype=as_dtype(mp_param_dtype, "mp_param_dtype"),
        reduce_dtype=as_dtype(reduce_dtype, "reduce_dtype"),
    )
    n = len(blocks)
    for i, block in enumerate(blocks):
        # The last block's weights are needed again at once by backward: keep them gathered.
        fully_shard(
            block,
            mesh=dp_mesh,
            mp_policy=policy,
            shard_placement_fn=fsdp_placement,
            reshard_after_forward=reshard_after_forward and i < n - 1,
        )
    fully_shard(model, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)

    if has_meta_tensors(model):
        materialize(model, device_mesh)
    return model


def materialize(model: nn.Module, device_mesh) -> None:
    """Allocate a (sharded) meta-device model on the mesh's device and run ``init_weights``.

    On CUDA, DTensor's RNG tracker gives every shard distinct values, as a full-tensor init would.
    On CPU each rank draws its own shard, so the seed is offset by rank to avoid identical shards.
    """
    if device_mesh.device_type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device(device_mesh.device_type)
    model.to_empty(device=device)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    ctx = nullcontext() if device.type == "cuda" else torch.random.fork_rng(devices=[])
    with ctx, torch.no_grad():
        if device.type != "cuda":
            torch.manual_seed(torch.initial_seed() + rank)
        model.init_weights()
