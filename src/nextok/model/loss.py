"""Next-token cross-entropy of the LM head without the whole batch's logits in memory.

Why: at a 128k vocabulary the plain path (``lm_head(x)`` -> ``.float()`` -> ``cross_entropy``)
holds the full ``(B*T, V)`` logits, their fp32 copy, the log-softmax and its gradient at once,
about 4x one fp32 logits tensor. ``chunked`` runs the head matmul and the loss over chunks of
rows; while training it also computes the gradients of the hidden states and of the head weight
in the same pass (d loss / d logits = softmax - one_hot is known as soon as a chunk's logits
are), so backward only scales them: no recomputation, the same matmul FLOPs as the plain path,
and one chunk of logits alive at a time. ``liger`` uses Liger-Kernel's fused Triton kernel
(CUDA only, when ``liger-kernel`` is installed); ``auto`` picks it there and ``chunked`` elsewhere.

``softcap`` (``model.logit_softcap``): the loss sees ``softcap * tanh(logits / softcap)``, as the
model's returned logits are; every path takes it except ``liger`` (``auto`` then picks ``chunked``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

LOSS_IMPLS = ("auto", "chunked", "plain", "liger")
IGNORE_INDEX = -100
# Rows (tokens) per chunk: one chunk's fp32 logits are at most this many elements (128 MiB),
# and at least 256 rows so each matmul stays large enough for tensor cores.
CHUNK_ELEMENTS = 1 << 25
MIN_CHUNK_ROWS = 256


def default_chunk_rows(vocab_size: int) -> int:
    return max(MIN_CHUNK_ROWS, CHUNK_ELEMENTS // vocab_size)


@functools.cache
def liger_available() -> bool:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure (no triton, no CUDA build) = absent
        return False
    return True


def resolve_loss_impl(impl: str, device: torch.device, softcap: float | None = None) -> str:
    """The implementation ``impl`` means on ``device``; a one-line error for unknown names."""
    if impl not in LOSS_IMPLS:
        raise ValueError(f"loss implementation must be one of {LOSS_IMPLS}, got {impl!r}")
    if impl == "auto":
        liger = device.type == "cuda" and liger_available() and softcap is None
        return "liger" if liger else "chunked"
    if impl == "liger" and not (device.type == "cuda" and liger_available()):
        raise ValueError("loss implementation 'liger' needs CUDA and `pip install liger-kernel`")
    if impl == "liger" and softcap is not None:
        raise ValueError(
            "loss implementation 'liger' does not take model.logit_softcap; use chunked"
        )
    return impl


def softcap_logits(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """``softcap * tanh(logits / softcap)`` (identity for None): logits bounded by +-softcap."""
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def plain_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None = None
) -> torch.Tensor:
    """The reference: full logits, fp32 cross-entropy, mean over non-ignored targets."""
    logits = softcap_logits(F.linear(hidden, weight), softcap)
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean CE of ``hidden @ weight.T`` against ``targets``; gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows, softcap):  # noqa: ANN001, ANN205
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        valid = targets != IGNORE_INDEX
        safe = torch.where(valid, targets, 0)
        count = valid.sum()
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        autocast = torch.is_autocast_enabled(hidden.device.type)
        for start in range(0, hidden.shape[0], chunk_rows):
            end = min(start + chunk_rows, hidden.shape[0])
            h, tgt, keep = hidden[start:end], safe[start:end, None], valid[start:end, None]
            # One fp32 buffer per chunk, updated in place: shifted logits -> exp -> softmax -> grad.
            z = F.linear(h, weight).float()  # autocast: a bf16 matmul, as in the plain path
            if softcap is not None:  # z = softcap * t, t = tanh(raw / softcap)
                t = z.div_(softcap).tanh_()
                z = t * softcap
            z = z.sub_(z.amax(dim=-1, keepdim=True))
            picked = z.gather(1, tgt)
            denom = z.exp_().sum(dim=-1, keepdim=True)
            total = total + ((denom.log() - picked) * keep).sum()
            if need_h or need_w:
                g = z.div_(denom)  # softmax
                g.scatter_add_(1, tgt, torch.full_like(denom, -1.0))  # - one_hot
                g.mul_(keep)  # ignored targets contribute nothing
                if softcap is not None:  # chain rule through the cap: d z / d raw = 1 - t^2
                    g.mul_(t.square_().neg_().add_(1.0))
                g = g.to(h.dtype)  # bf16 weights: a bf16 matmul, as the plain path's backward
                if need_h:
                    grad_h[start:end] = g @ weight
                if need_w:
                    if autocast or g.dtype != grad_w.dtype:
                        grad_w.add_(g.t() @ h)  # autocast: bf16 matmul, fp32 accumulation
                    else:
                        torch.addmm(grad_w, g.t(), h, out=grad_w)  # no (V, d) temporary
        ctx.save_for_backward(grad_h, grad_w, count)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.used = False
        return total / count  # 0/0 = nan when every target is ignored, like F.cross_entropy

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        if ctx.used:  # the saved gradients were scaled in place by the first backward
            raise RuntimeError("the chunked LM loss supports one backward pass per forward")
        ctx.used = True
        grad_h, grad_w, count = ctx.saved_tensors
        scale = grad_out / count
        dh = grad_h.mul_(scale).to(ctx.dtypes[0]) if grad_h is not None else None
        dw = grad_w.mul_(scale).to(ctx.dtypes[1]) if grad_w is not None else None
        return dh, dw, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Mean next-token CE of ``hidden @ weight.T`` (ignoring -100) in chunks of ``chunk_rows``."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    rows = chunk_rows or default_chunk_rows(weight.shape[0])
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, rows, softcap)


def liger_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:  # pragma: no cover - needs CUDA + liger-kernel
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    hidden = hidden.reshape(-1, hidden.shape[-1])
    if torch.is_autocast_enabled(hidden.device.type):  # Liger's kernel takes one dtype
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    # The module API (weight, input, target) is the one stable across Liger releases.
    out = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX)(
        weight, hidden, targets.reshape(-1)
    )
    return out[0] if isinstance(out, tuple) else out


def lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    impl: str = "auto",
    chunk_rows: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the LM head ``hidden @ weight.T`` against ``targets`` (-100 ignored).

    impl: ``auto`` | ``chunked`` | ``plain`` | ``liger`` (see the module docstring).
    """
    impl = resolve_loss_impl(impl, hidden.device, softcap)
    if impl == "plain":
        return plain_cross_entropy(hidden, weight, targets, softcap)
    if impl == "liger":  # pragma: no cover - needs CUDA + liger-kernel
        return liger_cross_entropy(hidden, weight, targets)
    return chunked_cross_entropy(hidden, weight, targets, chunk_rows, softcap)
