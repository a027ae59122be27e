"""Lightning's model summary with the model's training FLOPs per token (Lightning prints
``Total FLOPs: 0`` without an ``example_input_array``)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary

from nextok.lit.lightning_private import (
    format_summary_table,
)


class ModelSummaryWithFlops(ModelSummary):
    """Lightning's summary table, with the model's training FLOPs per token instead of 0."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._module = pl_module
        super().on_fit_start(trainer, pl_module)

    def summarize(
        self,
        summary_data,
        total_parameters,
        trainable_parameters,
        model_size,
        total_training_modes,
        total_flops,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [c for c in summary_data if c[0] != "FLOPs"]
        table = format_summary_table(
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
            *columns,
        )
        lines = [
            ln for ln in table.splitlines() if "Total Flops" not in ln and "Total FLOPs" not in ln
        ]
        module = getattr(self, "_module", None)
        config = getattr(module, "model_config", None)
        if config is not None and getattr(module, "model", None) is not None:
            flops = module.flops_per_token(config.block_size)
            lines.append(
                f"{flops / 1e6:<10.1f} M training FLOPs per token at block_size {config.block_size}"
            )
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + "\n".join(lines))
