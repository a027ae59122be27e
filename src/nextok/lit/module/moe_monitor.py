"""The training side of Mixture-of-Experts layers: auxiliary losses, routing metrics, bias updates.

The model records each MoE layer's routing in its forward (:class:`nextok.model.moe.RouterStats`);
this turns them into the loss terms the LightningModule adds to the cross-entropy, accumulates the
expert loads over an optimizer step's micro-batches (summed over data-parallel ranks, with a
collective but no host sync), and at the step's end returns the metrics to log and applies the
aux-loss-free bias update when ``model.moe_bias_update_rate`` > 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nextok.model import Transformer
from nextok.model.moe import aux_loss, imbalance, update_expert_bias


class MoEMonitor:
    """Per optimizer step: ``loss(reduce)`` once per micro-batch, then ``finish_step()``."""

    def __init__(self, model: Transformer) -> None:
        self.layers = model.moe_layers()
        # layer index in the model (first_k_dense layers are dense, so not range(len(layers)))
        self.index = [i for i, b in enumerate(model.blocks) if b.mlp in self.layers]
        c = model.config
        self.aux_coef, self.z_coef, self.rate = (
            c.moe_aux_loss_coef,
            c.moe_z_loss_coef,
            c.moe_bias_update_rate,
        )
        self.reset()

    def reset(self) -> None:
        self.counts: list[torch.Tensor] | None = None
        self.lb_sum: torch.Tensor | None = None
        self.z_sum: torch.Tensor | None = None
        self.n = 0

    def loss(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        """The auxiliary loss of the last forward (to add to the cross-entropy)."""
        aux = aux_loss(self.layers, self.aux_coef, self.z_coef, reduce)
        if self.counts is None:
            self.counts, self.lb_sum, self.z_sum = aux.counts, aux.load_balancing, aux.z
        else:
            self.counts = [a + b for a, b in zip(self.counts, aux.counts, strict=True)]
            self.lb_sum, self.z_sum = self.lb_sum + aux.load_balancing, self.z_sum + aux.z
        self.n += 1
        return aux.total

    def finish_step(self, update_bias: bool = True) -> dict[str, torch.Tensor]:
        """Metrics of this optimizer step (device tensors, not synced) and the bias update."""
        if not self.n:
            return {}
        out = {"moe/load_balancing_loss": self.lb_sum / self.n, "moe/z_loss": self.z_sum / self.n}
        for i, layer, counts in zip(self.index, self.layers, self.counts, strict=True):
            out[f"moe/imbalance/layer{i}"] = imbalance(counts)
            load = counts / counts.sum().clamp(min=1)
            out.update({f"moe/load/layer{i}/expert{e}": load[e] for e in range(len(load))})
            if self.rate > 0 and update_bias:
                update_expert_bias(layer, counts, self.rate)
        self.reset()
        return out
