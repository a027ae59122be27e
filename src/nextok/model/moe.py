"""Mixture-of-Experts MLP: softmax top-k router, dropless dispatch, grouped expert matmuls.

Every token goes to its ``moe_top_k`` highest-scoring experts (no capacity limit, nothing
dropped). Tokens are sorted by expert so each expert's tokens are one contiguous slice, and the
experts run as two grouped matmuls (``torch.nn.functional.grouped_mm``) over those slices; where
the device or shapes do not support it, a per-expert loop computes the same thing. Expert weights
are 3-D banks in the fused Hugging Face layout: ``w_fc`` (E, 2h, d) = [gate; up], ``w_proj``
(E, d, h).

The forward records router statistics (``self.stats``) for the auxiliary losses instead of
returning them, so the block interface stays ``x -> x``; :func:`aux_loss` turns them into the
load-balancing loss (Switch / GShard) and the router z-loss (ST-MoE). The per-expert
``expert_bias`` (a buffer, zero unless aux-loss-free balancing is on, DeepSeek-V3) shifts which
experts are *chosen*, never the weights the chosen experts get.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nextok.model.config import ModelConfig


class RouterStats(NamedTuple):
    """One forward's routing, for the auxiliary losses and logging.

    counts: (E,) tokens assigned per expert (no gradient). prob_mean: (E,) mean router
    probability per expert (differentiable). z: mean squared log-sum-exp of the router logits
    (differentiable).
    """

    counts: torch.Tensor
    prob_mean: torch.Tensor
    z: torch.Tensor


# ---------------------------------------------------------------------- grouped matmul op
# torch.nn.functional.grouped_mm runs on CPU (fp32 and bf16) and on CUDA (bf16, sm80+), but its
# fake-tensor rule only accepts bf16, so torch.compile would break the graph on fp32. Wrapped as a
# custom op (with its own fake rule and backward) it compiles as one opaque node everywhere.
@torch.library.custom_op("nextok::grouped_mm", mutates_args=())
def grouped_mm(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Rows ``offs[g-1]:offs[g]`` of ``a`` (M, K) times ``b[g]`` (K, N): (M, N)."""
    return F.grouped_mm(a, b, offs=offs)


@grouped_mm.register_fake
def _(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[-1])


@torch.library.custom_op("nextok::grouped_mm_wgrad", mutates_args=())
def grouped_mm_wgrad(a: torch.Tensor, grad: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Per group g: ``a[rows of g].T @ grad[rows of g]``: (G, K, N), the gradient of ``b``."""
    return F.grouped_mm(a.t(), grad, offs=offs)


@grouped_mm_wgrad.register_fake
def _(a: torch.Tensor, grad: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    return a.new_empty(offs.shape[0], a.shape[1], grad.shape[1])


def _setup(ctx, inputs, output) -> None:  # noqa: ANN001 - torch.library's signature
    a, b, offs = inputs
    ctx.save_for_backward(a, b, offs)


def _backward(ctx, grad: torch.Tensor):  # noqa: ANN001
    a, b, offs = ctx.saved_tensors
    grad = grad.contiguous()
    grad_a = grouped_mm(grad, b.transpose(-2, -1), offs) if ctx.needs_input_grad[0] else None
    grad_b = grouped_mm_wgrad(a, grad, offs) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b, None


grouped_mm.register_autograd(_backward, setup_context=_setup)


def _aligned(*sizes: int, itemsize: int) -> bool:
    return all(s * itemsize % 16 == 0 for s in sizes)


class MoE(nn.Module):
    """Routed SwiGLU experts plus optional always-on shared experts (``shared``, a dense MLP)."""

    def __init__(self, cfg: ModelConfig, shared: nn.Module | None = None) -> None:
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.moe_top_k
        self.hidden, self.d_model = cfg.moe_ffn_dim, cfg.d_model
        self.norm_topk = cfg.moe_norm_topk
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.router.no_muon = True  # a small softmax classifier: AdamW, not Muon
        self.w_fc = nn.Parameter(torch.empty(cfg.n_experts, 2 * self.hidden, cfg.d_model))
        self.w_proj = nn.Parameter(torch.empty(cfg.n_experts, cfg.d_model, self.hidden))
        self.register_buffer("expert_bias", torch.zeros(cfg.n_experts))
        self.shared = shared
        self.use_grouped_mm: bool | None = None  # None: where supported; False: per-expert loop
        self.stats: RouterStats | None = None

    def reset_parameters(self, std: float, proj_std: float) -> None:
        nn.init.normal_(self.router.weight, std=std)
        nn.init.normal_(self.w_fc, std=std)
        nn.init.normal_(self.w_proj, std=proj_std)
        nn.init.zeros_(self.expert_bias)

    def expert_parameters(self) -> int:
        """Parameters of one routed expert."""
        return 3 * self.hidden * self.d_model

    # ------------------------------------------------------------------ routing
    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(logits, probs)`` (N, E) fp32, chosen expert ids (N, k) and their weights (N, k)
        for tokens ``x`` (N, d)."""
        logits = self.router(x).float()
        probs = logits.softmax(dim=-1)
        _, idx = torch.topk(probs + self.expert_bias, self.top_k, dim=-1)
        weights = probs.gather(-1, idx)
        if self.norm_topk:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, probs, idx, weights

    def _grouped_ok(self, x: torch.Tensor) -> bool:
        if self.use_grouped_mm is not None:
            return self.use_grouped_mm
        if not hasattr(F, "grouped_mm"):
            return False
        if not _aligned(self.d_model, self.hidden, 2 * self.hidden, itemsize=x.element_size()):
            return False  # grouped GEMM kernels need 16-byte aligned rows
        if x.device.type == "cpu":
            return True
        if x.device.type == "cuda":
            return x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device) >= (
                8,
                0,
            )
        return False

    def experts(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """SwiGLU of each expert over its slice of the expert-sorted tokens ``xs``."""
        w_fc, w_proj = self.w_fc, self.w_proj
        if torch.is_autocast_enabled(xs.device.type):  # grouped_mm is not on autocast's lists
            dtype = torch.get_autocast_dtype(xs.device.type)
            xs, w_fc, w_proj = xs.to(dtype), w_fc.to(dtype), w_proj.to(dtype)
        else:
            xs = xs.to(w_fc.dtype)
        if self._grouped_ok(xs):
            offs = counts.cumsum(0).to(torch.int32)
            h = grouped_mm(xs, w_fc.transpose(-2, -1), offs)
            gate, up = h.chunk(2, dim=-1)
            return grouped_mm(F.silu(gate) * up, w_proj.transpose(-2, -1), offs)
        outs = []  # fallback: one pair of matmuls per expert (reads the counts on the host)
        for e, chunk in enumerate(xs.split(counts.tolist())):
            gate, up = F.linear(chunk, w_fc[e]).chunk(2, dim=-1)
            outs.append(F.linear(F.silu(gate) * up, w_proj[e]))
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits, probs, idx, weights = self.route(flat)
        flat_idx = idx.reshape(-1)  # (N*k,) assignment a = token a // k, slot a % k
        order = flat_idx.argsort(stable=True)  # assignments grouped by expert
        counts = torch.zeros(self.n_experts, dtype=torch.long, device=x.device)
        counts.scatter_add_(0, flat_idx, torch.ones_like(flat_idx))
        token = order // self.top_k
        h = self.experts(flat[token], counts)
        h = h * weights.reshape(-1)[order].unsqueeze(-1).to(h.dtype)
        out = torch.zeros_like(flat).index_add_(0, token, h.to(flat.dtype))
        if self.shared is not None:
            out = out + self.shared(flat)
        if torch.is_grad_enabled():
            z = torch.logsumexp(logits, dim=-1).square().mean()
            self.stats = RouterStats(counts.detach().float(), probs.mean(0), z)
        return out.view(shape)


# ---------------------------------------------------------------------- auxiliary losses
def load_balancing_loss(counts: torch.Tensor, prob_mean: torch.Tensor) -> torch.Tensor:
    """``E * sum_e f_e * P_e``: f_e = share of the N*k assignments that went to expert e,
    P_e = mean router probability of e. Equals 1 when routing is uniform, whatever k is
    (Switch Transformer's loss with f normalised by N*k instead of N)."""
    f = counts / counts.sum().clamp(min=1)
    return counts.numel() * (f * prob_mean).sum()


class AuxLoss(NamedTuple):
    """total = aux_coef x load_balancing + z_coef x z (summed over layers); counts per layer."""

    total: torch.Tensor
    load_balancing: torch.Tensor
    z: torch.Tensor
    counts: list[torch.Tensor]


def aux_loss(
    layers: list[MoE],
    aux_coef: float,
    z_coef: float,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> AuxLoss:
    """The auxiliary losses of ``layers``' last forward.

    ``reduce`` (e.g. a sum over data-parallel ranks, no gradient) makes f the share over all
    ranks' tokens; averaged gradients then equal those of one process holding the whole batch.
    """
    lb = z = None
    all_counts = []
    for layer in layers:
        if layer.stats is None:
            raise RuntimeError("aux_loss needs a training forward first (no router stats)")
        counts = layer.stats.counts if reduce is None else reduce(layer.stats.counts.clone())
        all_counts.append(counts)
        lb_i = load_balancing_loss(counts, layer.stats.prob_mean)
        lb = lb_i if lb is None else lb + lb_i
        z = layer.stats.z if z is None else z + layer.stats.z
    return AuxLoss(aux_coef * lb + z_coef * z, lb.detach(), z.detach(), all_counts)


@torch.no_grad()
def update_expert_bias(layer: MoE, counts: torch.Tensor, rate: float) -> None:
    """Aux-loss-free balancing (DeepSeek-V3, Wang et al. 2024): raise the bias of under-loaded
    experts and lower that of over-loaded ones by ``rate`` (sign of the load error)."""
    layer.expert_bias.add_(rate * torch.sign(counts.mean() - counts))


def imbalance(counts: torch.Tensor) -> torch.Tensor:
    """Max over mean expert load (1 = perfectly balanced, E = one expert takes everything)."""
    return counts.max() / counts.mean().clamp(min=1e-9)
