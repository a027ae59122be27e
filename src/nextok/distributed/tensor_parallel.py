"""Megatron-style tensor parallelism for :class:`~nextok.model.Transformer` blocks (DTensor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor.parallel import (
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.distributed.tensor.parallel.style import ParallelStyle


def tp_dim(param) -> int | None:
    """The tensor dim a tensor-parallel DTensor parameter is sharded on (None if not sharded)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(param, DTensor):
        return None
    for placement in param.placements:
        dim = getattr(placement, "dim", None)  # Shard and _StridedShard
        if dim is not None:
            return dim
    return None


def fsdp_placement(param):
    """FSDP shards dim 0, except for weights that tensor parallelism already split on dim 0:
    those are sharded on dim 1 so the two shardings stay orthogonal (plain 2-D placements)."""
    from torch.distributed.tensor import Shard

    if tp_dim(param) == 0 and param.ndim == 2:
        return Shard(1)
    return None


class FusedColwiseParallel(ParallelStyle):
    """Megatron column-parallel Linear whose output is ``split_factor`` fused parts.

    qkv = [Q; K; V] and SwiGLU's fc = [gate; up] are single matmuls; a plain ``Shard(0)`` would
    give rank 0 all of Q (or all of the gate). ``_StridedShard`` gives each rank the same slice of
    every part ([Q_r; K_r; V_r]) while the global (checkpointed) weight keeps its unsharded layout.
    The forward runs on local shards (DTensor's sharding propagation would redistribute the
    output to a contiguous layout): input replicated, gradient all-reduced in backward
    (Megatron's "f"), output the rank's slice of each part, so ``split``/``chunk`` work unchanged.
    """

    def __init__(self, split_factor: int = 1) -> None:
        super().__init__()
        self.split_factor = split_factor

    def _apply(self, module: nn.Module, device_mesh) -> nn.Module:
        from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
        from torch.distributed.tensor.placement_types import _StridedShard

        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"FusedColwiseParallel applies to nn.Linear, got {type(module).__name__}"
            )
        k = self.split_factor
        placement = _StridedShard(0, split_factor=k) if k > 1 else Shard(0)
        for name, param in list(module.named_parameters(recurse=False)):
            dist = distribute_tensor(param.detach(), device_mesh, [placement])
            module.register_parameter(name, nn.Parameter(dist, requires_grad=param.requires_grad))

        def forward(x: torch.Tensor) -> torch.Tensor:
            x = DTensor.from_local(x, device_mesh, [Replicate()], run_check=False)
            x = x.to_local(grad_placements=[Partial()])  # identity; backward all-reduces dL/dx
            bias = module.bias.to_local() if module.bias is not None else None
            return F.linear(x, module.weight.to_local(), bias)

        module.forward = forward
        return module


def apply_tensor_parallel(model: nn.Module, tp_mesh) -> None:
    """Megatron-style tensor parallelism inside each block (column- then row-parallel Linears).

    The MLP is always split; attention is split by heads when ``n_head == n_kv_head`` (with
    grouped-query attention a rank's query heads would not line up with its K/V heads in the
    fused qkv layout, so attention then stays replicated across the tensor-parallel ranks).
    Embeddings, norms and the LM head stay replicated. Each tensor-parallel group must see the
    same batch: data is sharded over the ``data_parallel`` mesh dim only.
    """
    cfg = model.config
    tp = tp_mesh.size()
    if cfg.mlp == "moe":
        raise ValueError(
            "tensor parallelism does not support model.mlp=moe; use trainer.strategy."
            "tensor_parallel_size=1 (FSDP2 shards MoE models)"
        )
    if cfg.ffn_dim % tp:
        raise ValueError(f"tensor_parallel_size {tp} must divide the MLP width {cfg.ffn_dim}")
    split_attention = cfg.n_head == cfg.n_kv_head and cfg.n_head % tp == 0
    for block in model.blocks:
        plan = {
            "mlp.fc": FusedColwiseParallel(2 if cfg.mlp == "swiglu" else 1),
            "mlp.proj": RowwiseParallel(),
        }
        if split_attention:
            plan["attn.qkv"] = FusedColwiseParallel(3)
            plan["attn.proj"] = RowwiseParallel()
            if cfg.qk_norm:
                # q/k (B, heads, T, D) are split by heads: each rank's norm weights see only its
                # heads, so they become replicated DTensors whose gradients are summed over ranks
                plan["attn.q_norm"] = SequenceParallel(sequence_dim=1, use_local_output=True)
                plan["attn.k_norm"] = SequenceParallel(sequence_dim=1, use_local_output=True)
        parallelize_module(block, tp_mesh, plan)
        if split_attention:
            # The attention module now sees only its rank's heads.
            block.attn.n_head //= tp
            block.attn.n_kv_head //= tp
