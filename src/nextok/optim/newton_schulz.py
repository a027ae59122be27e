"""Muon's update (``torch.optim.Muon``'s) with three additions: the Newton-Schulz dtype is a
choice, 3-D MoE expert banks ``(experts, out, in)`` are orthogonalised one expert at a time, and
sharded parameters (FSDP2 / tensor parallel DTensors) work: Newton-Schulz needs the whole matrix,
so each rank all-gathers the momentum update, iterates on it (every rank the same, redundantly:
simple and exact; distributing matrices over ranks would save compute), and keeps its own shard.

torch runs Newton-Schulz in bf16, right for GPU tensor cores; on CPUs without bf16 matrix units a
bf16 matmul is 10-16x slower than an fp32 one, so ``auto`` uses fp32 off CUDA
(``benchmarks/optimizer_step.py`` measures both).
"""

from __future__ import annotations

import math
from typing import Any

import torch

NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}  # and "auto"


def ns_dtype_for(device: torch.device, ns_dtype: str) -> torch.dtype:
    """The Newton-Schulz dtype for a matrix on ``device``: ``auto`` is bf16 on CUDA (as
    ``torch.optim.Muon``), fp32 elsewhere (bf16 matmuls are slow on CPUs without bf16 units)."""
    if ns_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return NS_DTYPES[ns_dtype]


def newton_schulz(
    g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype
) -> torch.Tensor:
    """Approximately orthogonalise ``g`` (US'V^T, S' ~ 1) with ``torch.optim.Muon``'s quintic
    iteration, computed in ``dtype``; a 3-D ``g`` is a batch of matrices, each on its own. The
    result is a new tensor (``g`` is never modified)."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT  # iterate on the smaller Gram matrix
    if x.ndim == 2:  # torch's exact operations (the bf16 path equals torch.optim.Muon's)
        x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm = 1
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    else:
        x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.mT
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def lr_scale(shape: torch.Size, adjust_lr_fn: str | None) -> float:
    """Muon's per-matrix lr factor for a ``(rows, cols)`` matrix (the last two dims)."""
    rows, cols = shape[-2:]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, rows / cols))  # "original" (torch's default, also for None)


def _is_sharded(t: torch.Tensor) -> bool:
    """A DTensor (FSDP2 / tensor parallel); imported lazily: torch builds without
    ``torch.distributed`` still run Muon on plain tensors."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def whole(t: torch.Tensor) -> torch.Tensor:
    """The full matrix of a sharded tensor (an all-gather), a plain tensor as it is."""
    return t.full_tensor() if _is_sharded(t) else t


def shard_like(full: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``full`` (the same on every rank) laid out as ``p``: this rank's shard (no communication:
    replicated to sharded is a local slice)."""
    if not _is_sharded(p):
        return full
    from torch.distributed.tensor import DTensor, Replicate

    mesh = p.device_mesh
    replicated = DTensor.from_local(full, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(mesh, p.placements)


def run_closure(closure) -> Any:  # noqa: ANN001 - torch's closure: () -> loss
    """``torch.optim.Optimizer.step``'s closure contract: re-evaluate the loss with grad on."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


# torch < 2.9 has no Muon: the class still defines (MuonConfig refuses optim=muon there).
_TorchMuon = getattr(torch.optim, "Muon", torch.optim.Optimizer)


class Muon(_TorchMuon):
    """``torch.optim.Muon`` (same groups, state and update) whose Newton-Schulz iteration runs in
    ``ns_dtype`` (see :func:`ns_dtype_for`) and which also takes 3-D expert banks (a group of
    their own; torch's constructor accepts 2-D tensors only). ``tests/lit/test_muon.py`` checks
    that the bf16 update equals torch's bit for bit (fp32 parameters; with bf16 parameters and
    ``nesterov=False`` torch's in-place normalisation also rescales its momentum buffer, ours
    never touches it) and that a bank's update equals its experts'. Complex and sparse gradients,
    which torch refuses, do not occur in nextok models."""

    def __init__(self, params, *, ns_dtype: str = "auto", **kwargs: Any) -> None:  # noqa: ANN001
        groups = list(params)
        banks = [g for g in groups if isinstance(g, dict) and all(p.ndim == 3 for p in g["params"])]
        matrices = [g for g in groups if all(g is not b for b in banks)]
        if not matrices:  # torch's constructor refuses an empty list, and a 3-D tensor
            raise ValueError("Muon needs at least one 2-D matrix besides 3-D expert banks")
        super().__init__(matrices, **kwargs)
        for group in banks:  # after torch's 2-D-only check; defaults fill them as any group
            self.add_param_group(group)
        self.ns_dtype = ns_dtype  # a compute choice, not a hyper-parameter: not in the state

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = run_closure(closure)
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            lr = lr.item() if isinstance(lr, torch.Tensor) else lr  # as torch's _to_scalar
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                update = newton_schulz(
                    whole(update),
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                    ns_dtype_for(p.device, self.ns_dtype),
                )
                update = shard_like(update, p)
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * lr_scale(p.shape, group["adjust_lr_fn"]))
        return loss
