"""Building the LMModule's Transformer: on the meta device for FSDP2, with ``init_from`` weights,
compiled, activation-checkpointed and sharded as configured (``LightningModule.configure_model``)."""

from __future__ import annotations

import contextlib

import torch

from nextok.lit.lightning_private import attached_trainer
from nextok.lit.module.moe_monitor import MoEMonitor
from nextok.model import Transformer


class ModelSetup:
    """``configure_model``/``forward`` of :class:`~nextok.lit.module.LMModule` (a mixin)."""

    def configure_model(self) -> None:
        """Build the Transformer once; then compile / checkpoint / shard it as configured."""
        if self.model is not None:
            return
        # FSDP2Strategy(meta_init=True): build on the meta device; parallelize() materialises
        # each rank's shard only (models larger than one device's memory).
        strategy = attached_trainer(self).strategy if attached_trainer(self) is not None else None
        meta = self.device_mesh is not None and getattr(strategy, "meta_init", False)
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = Transformer(self.model_config)
        model.activation_checkpointing = self.activation_checkpointing
        model.loss_impl, model.loss_chunk_rows = self.loss_impl, self.loss_chunk_rows
        if self.init_state is not None and not meta:
            _load_full(model, self.init_state)
        if self.compile_model and self.compile_mode == "blocks":
            for block in model.blocks:
                block.compile(backend=self.compile_backend)
        self.model = model
        if model.moe_layers():
            self.moe = MoEMonitor(model)
        if self.device_mesh is not None:
            from nextok.distributed import parallelize

            out = parallelize(
                self.model, self.device_mesh, **getattr(strategy, "parallelize_kwargs", {})
            )
            if out is not None:
                self.model = out
            if self.init_state is not None and meta:  # each rank keeps its shard of the weights
                from torch.distributed.checkpoint.state_dict import (
                    StateDictOptions,
                    set_model_state_dict,
                )

                set_model_state_dict(
                    self.model,
                    _with_tied(model, self.init_state),
                    options=StateDictOptions(full_state_dict=True),
                )
        self.init_state = None  # free the full copy
        if self.compile_model and self.compile_mode == "model":
            self.model.compile(backend=self.compile_backend)  # in place: same state-dict keys
        if not meta and self.device_mesh is None:
            # Lightning's model summary measures FLOPs on this input (one forward, rank 0 only:
            # under FSDP that forward would need every rank, so no example there).
            self.example_input_array = torch.zeros(
                1, self.model_config.block_size, dtype=torch.long
            )

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        return self.model(idx, targets)

    def flops_per_token(self, seq_len: int) -> float:
        if seq_len not in self._flops_per_token:
            self._flops_per_token[seq_len] = float(self.model.flops_per_token(seq_len))
        return self._flops_per_token[seq_len]


def _with_tied(model: Transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if model.config.tie_embeddings and "lm_head.weight" not in state:
        return {**state, "lm_head.weight": state["tok_emb.weight"]}
    return state


def _load_full(model: Transformer, state: dict[str, torch.Tensor]) -> None:
    """Copy ``init_from`` weights in; every parameter must be filled, nothing left over."""
    model.load_state_dict(_with_tied(model, state), strict=True)
