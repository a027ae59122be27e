"""Parallelism as a layer over the plain model (plain PyTorch, no Lightning): FSDP2 sharding,
Megatron-style tensor parallelism, meta-device materialisation and gradient norms over sharded
gradients. ``nextok.lit.strategy`` is the thin Lightning strategy that hands a device mesh here."""

from nextok.distributed.fsdp import DP_DIM, TP_DIM, has_meta_tensors, materialize, parallelize
from nextok.distributed.grad_norm import grad_norm_
from nextok.distributed.tensor_parallel import FusedColwiseParallel, apply_tensor_parallel

__all__ = [
    "DP_DIM",
    "TP_DIM",
    "FusedColwiseParallel",
    "apply_tensor_parallel",
    "grad_norm_",
    "has_meta_tensors",
    "materialize",
    "parallelize",
]
