"""FSDP2 (``fully_shard``) and tensor parallelism for :class:`~nextok.model.Transformer`.

``parallelize`` is called from the LightningModule's ``configure_model`` when Lightning's
``ModelParallelStrategy`` (here :class:`FSDP2Strategy`) has built a device mesh. It shards each
transformer block as its own FSDP unit (so only one block's full weights exist at a time), then the
root (embeddings, final norm, LM head). The same code runs on GPUs (NCCL) and on CPU (gloo), which
is how it is tested.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

DP_DIM, TP_DIM = "data_parallel", "tensor_parallel"

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "16": torch.float16,
}


def as_dtype(value: str | torch.dtype | None, key: str = "dtype") -> torch.dtype | None:
    """``"bfloat16"``/``"bf16"``/``torch.bfloat16`` -> ``torch.bfloat16``; None stays None."""
    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"{key}: unknown dtype {value!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def _submesh(mesh, name: str):
    names = mesh.mesh_dim_names or ()
    if name in names:
        return mesh[name]
    if len(names) <= 1 and name == DP_DIM:
        return mesh  # a plain 1-D mesh is the data-parallel mesh
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
        raise TypeError(f"parallelize expects a nextok Transformer (with .blocks), got {type(model).__name__}")
    tp_mesh = _submesh(device_mesh, TP_DIM)
    if tensor_parallel and tp_mesh is not None and tp_mesh.size() > 1:
        apply_tensor_parallel(model, tp_mesh)

    dp_mesh = _submesh(device_mesh, DP_DIM)
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
            block, mesh=dp_mesh, mp_policy=policy, shard_placement_fn=_fsdp_placement,
            reshard_after_forward=reshard_after_forward and i < n - 1,
        )
    fully_shard(model, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)

    if has_meta_tensors(model):
        materialize(model, device_mesh)
    return model


def grad_norm_(parameters, max_norm: float | None = None) -> torch.Tensor:
    """Global L2 norm of the gradients (clipped to ``max_norm`` if given), for any sharding.

    ``torch.nn.utils.clip_grad_norm_`` stacks the per-parameter norms, which fails when DTensor
    gradients live on different meshes (FSDP + tensor parallel: 2-D for split weights, 1-D for
    the rest). Here each group of equally placed gradients is reduced separately, then combined.
    """
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    groups: dict[Any, list[torch.Tensor]] = {}
    for g in grads:
        key = (getattr(g, "device_mesh", None), tuple(getattr(g, "placements", ())))
        groups.setdefault(key, []).append(g)
    if len({mesh for mesh, _ in groups}) == 1:  # one mesh (or none): torch's own code path
        params = [p for p in parameters if p.grad is not None]
        if max_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.nn.utils.get_total_norm(grads)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    total = None
    for group in groups.values():
        norm = torch.nn.utils.get_total_norm(group)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        norm = norm.float().cpu() ** 2
        total = norm if total is None else total + norm
    total = total.sqrt()
    if max_norm is not None and max_norm > 0:
        coef = float(max_norm) / (float(total) + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
    return total


# ---------------------------------------------------------------------------- tensor parallel
def _tp_dim(param) -> int | None:
    """The tensor dim a tensor-parallel DTensor parameter is sharded on (None if not sharded)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(param, DTensor):
        return None
    for placement in param.placements:
        dim = getattr(placement, "dim", None)  # Shard and _StridedShard
        if dim is not None:
            return dim
    return None


def _fsdp_placement(param):
    """FSDP shards dim 0, except for weights that tensor parallelism already split on dim 0:
    those are sharded on dim 1 so the two shardings stay orthogonal (plain 2-D placements)."""
    from torch.distributed.tensor import Shard

    if _tp_dim(param) == 0 and param.ndim == 2:
        return Shard(1)
    return None


class FusedColwiseParallel:
    """Megatron column-parallel Linear whose output is ``split_factor`` fused parts.

    qkv = [Q; K; V] and SwiGLU's fc = [gate; up] are single matmuls; a plain ``Shard(0)`` would
    give rank 0 all of Q (or all of the gate). ``_StridedShard`` gives each rank the same slice of
    every part ([Q_r; K_r; V_r]) while the global (checkpointed) weight keeps its unsharded layout.
    The forward runs on local shards (DTensor's sharding propagation would redistribute the
    output to a contiguous layout): input replicated, gradient all-reduced in backward
    (Megatron's "f"), output the rank's slice of each part, so ``split``/``chunk`` work unchanged.
    """

    def __new__(cls, split_factor: int = 1):
        from torch.distributed.tensor.parallel.style import ParallelStyle

        class _Style(ParallelStyle):
            def _apply(self, module: nn.Module, mesh) -> nn.Module:
                return _fused_colwise(module, mesh, split_factor)

        return _Style()


def _fused_colwise(module: nn.Module, mesh, split_factor: int) -> nn.Module:
    import torch.nn.functional as F
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.placement_types import _StridedShard

    if not isinstance(module, nn.Linear):
        raise TypeError(f"FusedColwiseParallel applies to nn.Linear, got {type(module).__name__}")
    placement = _StridedShard(0, split_factor=split_factor) if split_factor > 1 else Shard(0)
    for name, param in list(module.named_parameters(recurse=False)):
        dist = distribute_tensor(param.detach(), mesh, [placement])
        module.register_parameter(name, nn.Parameter(dist, requires_grad=param.requires_grad))

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = DTensor.from_local(x, mesh, [Replicate()], run_check=False)
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
    from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

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
        parallelize_module(block, tp_mesh, plan)
        if split_attention:
            # The attention module now sees only its rank's heads.
            block.attn.n_head //= tp
            block.attn.n_kv_head //= tp


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


class FSDP2Strategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` with sizes that default to pure FSDP.

    Lightning's ``"auto"`` sizes mean "data parallel across nodes, tensor parallel within a node";
    here ``tensor_parallel_size`` defaults to 1 and the data-parallel size is inferred as
    ``world_size / tensor_parallel_size``. The FSDP options are stored on the strategy so the
    LightningModule's ``configure_model`` can pass them on: ``parallelize(model, mesh,
    **strategy.parallelize_kwargs)``. ``meta_init`` asks the module to build the model on the meta
    device (no rank allocates the full model).
    """

    def __init__(
        self,
        tensor_parallel_size: int = 1,
        data_parallel_size: int | Literal["auto"] = "auto",
        mp_param_dtype: str | None = None,
        reduce_dtype: str | None = "float32",
        reshard_after_forward: bool = True,
        meta_init: bool = False,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout_s: float = 1800.0,
    ) -> None:
        if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
            raise ValueError(
                f"trainer.strategy.tensor_parallel_size must be a positive integer, got {tensor_parallel_size!r}"
            )
        # torch.distributed.checkpoint cannot describe the strided shards of the fused qkv / SwiGLU
        # weights ("overlapping chunks"): with tensor parallelism, checkpoints are gathered into
        # one full file on rank 0 instead (and re-sharded on load).
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=tensor_parallel_size,
            save_distributed_checkpoint=save_distributed_checkpoint and tensor_parallel_size == 1,
            process_group_backend=process_group_backend,
            timeout=timedelta(seconds=timeout_s),
        )
        self.meta_init = meta_init
        self.parallelize_kwargs: dict[str, Any] = {
            "mp_param_dtype": as_dtype(mp_param_dtype, "trainer.strategy.mp_param_dtype"),
            "reduce_dtype": as_dtype(reduce_dtype, "trainer.strategy.reduce_dtype"),
            "reshard_after_forward": reshard_after_forward,
        }

    def setup_environment(self) -> None:
        world = self.num_nodes * self.num_processes
        tp = self._tensor_parallel_size
        if world % tp:
            raise ValueError(
                f"trainer.strategy.tensor_parallel_size={tp} does not divide the world size {world} "
                f"(num_nodes={self.num_nodes} x devices={self.num_processes})"
            )
        if self._data_parallel_size == "auto":
            self._data_parallel_size = world // tp
        elif self._data_parallel_size * tp != world:
            raise ValueError(
                f"trainer.strategy.data_parallel_size={self._data_parallel_size} x "
                f"tensor_parallel_size={tp} must equal the world size {world}"
            )
        super().setup_environment()
