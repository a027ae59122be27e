"""Global gradient norm (and clipping) for gradients sharded over one or several device meshes."""

from __future__ import annotations

from typing import Any

import torch


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
