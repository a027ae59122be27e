"""Muon's update (``torch.optim.Muon``'s) with three additions: the Newton-Schulz dtype is a
choice, 3-D MoE expert banks ``(experts, out, in)`` are orthogonalised one expert at a time, and
sharded parameters (FSDP2 / tensor parallel DTensors) work: Newton-Schulz needs the whole matrix,
so each rank all-gathers the momentum update, iterates on it (every rank the same, redundantly:
simple and exact; distributing matrices over ranks would save compute), and keeps its own shard.

Small matrices of one shape (a model's layers) are orthogonalised together: stacked into one
batch, the iteration runs as a handful of batched matmuls instead of a few dozen small ones per
matrix (as modded-nanogpt does); each matrix's result is the one it gets alone (per-matrix norm,
the same operations per batch entry; the batched matmul may sum in another order: ~1e-7).

torch runs Newton-Schulz in bf16, right for GPU tensor cores; on CPUs without bf16 matrix units a
bf16 matmul is 10-16x slower than an fp32 one, so ``auto`` uses fp32 off CUDA
(``benchmarks/optimizer_step.py`` measures both).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


# Matrices stacked into one Newton-Schulz batch hold at most this many elements together (16M:
# 64 MiB in fp32), so batching bounds the extra memory; matrices this large are compute-bound
# anyway and gain nothing from it.
BATCH_ELEMENTS = 1 << 24


def ns_batches(
    params: list[torch.Tensor],
    dtype_of: Callable[[torch.Tensor], torch.dtype],
    max_elements: int = BATCH_ELEMENTS,
) -> list[list[torch.Tensor]]:
    """``params`` split into Newton-Schulz batches: 2-D plain tensors with one device, dtype
    (``dtype_of(p)``) and shape up to transposition (a tall matrix iterates on its transpose
    anyway) go together, up to ``max_elements`` per batch (0: every matrix alone); sharded
    tensors (each needs its own all-gather; one at a time keeps the gathered memory to one
    matrix) and 3-D banks go alone."""
    out: list[list[torch.Tensor]] = []
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.ndim != 2 or _is_sharded(p):
            out.append([p])
            continue
        key = (p.device, dtype_of(p), tuple(sorted(p.shape)))
        bucket = buckets.setdefault(key, [])
        if bucket and (len(bucket) + 1) * p.numel() > max_elements:
            out.append(bucket)
            bucket = buckets[key] = []
        bucket.append(p)
    return out + [b for b in buckets.values() if b]


def newton_schulz_batch(
    mats: list[torch.Tensor],
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """:func:`newton_schulz` of each matrix in ``mats`` (one batch of :func:`ns_batches`: one
    matrix or bank, or 2-D matrices of one shape up to transposition), iterated as one stack."""
    if len(mats) == 1:
        return [newton_schulz(mats[0], coefficients, steps, eps, dtype)]
    tall = [g.size(0) > g.size(1) for g in mats]
    stack = torch.stack([g.mT if t else g for g, t in zip(mats, tall, strict=True)])
    result = newton_schulz(stack, coefficients, steps, eps, dtype)
    return [r.mT if t else r for r, t in zip(result, tall, strict=True)]


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
    never touches it), that a bank's update equals its experts' and that batching same-shape
    matrices changes the update by float rounding at most. Complex and sparse gradients,
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
        # Newton-Schulz batch size (ns_batches); 0: one matrix at a time, the benchmark's baseline
        self.ns_batch_elements = BATCH_ELEMENTS

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = run_closure(closure)
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            lr = lr.item() if isinstance(lr, torch.Tensor) else lr  # as torch's _to_scalar
            params = [p for p in group["params"] if p.grad is not None]
            for batch in ns_batches(params, self._ns_dtype, self.ns_batch_elements):
                orthogonal = newton_schulz_batch(
                    [whole(self._momentum_update(p, group)) for p in batch],
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                    self._ns_dtype(batch[0]),
                )
                for p, update in zip(batch, orthogonal, strict=True):
                    if wd:
                        p.mul_(1 - lr * wd)
                    alpha = -lr * lr_scale(p.shape, group["adjust_lr_fn"])
                    p.add_(shard_like(update, p), alpha=alpha)
        return loss

    def _ns_dtype(self, p: torch.Tensor) -> torch.dtype:
        return ns_dtype_for(p.device, self.ns_dtype)

    def _momentum_update(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """Advance ``p``'s momentum buffer by its gradient; the update to orthogonalise
        (Nesterov: the gradient pulled towards the new buffer)."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p.grad)
        buf = state["momentum_buffer"]
        mu = group["momentum"]
        buf.lerp_(p.grad, 1 - mu)
        return p.grad.lerp(buf, mu) if group["nesterov"] else buf
