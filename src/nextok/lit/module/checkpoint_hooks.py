"""What the LMModule adds to a checkpoint and checks when loading one: the ``nextok`` entry of the
checkpoint contract (:mod:`nextok.checkpoint.format`: model config, tokenizer, special tokens, data config,
tokens seen, last validation, export info) and every RNG's state (so a resumed run continues bit for bit)."""

from __future__ import annotations

from typing import Any

import torch

from nextok.checkpoint.format import META_KEY, rng_state, set_rng_state
from nextok.model import ModelConfig


class CheckpointHooks:
    """``on_save_checkpoint``/``on_load_checkpoint`` of :class:`~nextok.lit.module.LMModule`."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the checkpoint contract's ``nextok`` entry (see :mod:`nextok.checkpoint.format`)."""
        self._sync_point()  # never save weights poisoned by a non-finite loss (policy stop)
        self._refuse_nonfinite_weights()  # nor any NaN/inf weight, whatever the policy
        meta: dict[str, Any] = {
            "model_config": self.model_config.to_dict(),
            "tokens_seen": int(self.tokens_seen),
            "rng": rng_state(),
        }
        if self.tokenizer is not None:
            meta["tokenizer_json"] = self.tokenizer.to_str()
        if self.special_tokens is not None:
            meta["special_tokens"] = self.special_tokens.to_dict()
        if self.data_config is not None:
            meta["data_config"] = self.data_config
        if self._last_val is not None:  # for the exported model card
            loss, step, scope, tokens = self._last_val
            meta.update(val_loss=float(loss), val_step=step, val_scope=scope, val_tokens=tokens)
        meta.update(self.export_info)
        checkpoint[META_KEY] = meta

    def _refuse_nonfinite_weights(self) -> None:
        """Raise :class:`NonFiniteLossError` instead of saving NaN/inf weights (one host sync per
        checkpoint; every rank checks its own shards)."""
        from nextok.lit.module.loss_guard import NonFiniteLossError

        names, flags = [], []
        for name, t in self.model.state_dict().items():
            if torch.is_floating_point(t):
                local = t.to_local() if hasattr(t, "to_local") else t
                names.append(name)
                flags.append(~torch.isfinite(local).all())
        if not flags:
            return
        bad = torch.stack(flags).float()
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        found = [names[i] for i in bad.nonzero().flatten().tolist()]
        if found:
            raise NonFiniteLossError(
                f"refusing to save a checkpoint at step {self.global_step}: weights are not "
                f"finite (NaN/inf) in {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}; "
                "the last checkpoint saved is kept. Lower optim.lr, or set "
                "module.on_nonfinite=skip to drop such steps."
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(META_KEY)
        if meta is None:
            raise ValueError("checkpoint has no 'nextok' entry: not written by nextok-train")
        saved = meta.get("model_config", {})
        if saved:  # through ModelConfig, so keys added since the checkpoint get their defaults
            saved = ModelConfig.from_dict(saved).to_dict()
        if saved and saved != self.model_config.to_dict():
            diff = {
                k: (saved.get(k), v)
                for k, v in self.model_config.to_dict().items()
                if saved.get(k) != v
            }
            raise ValueError(
                "the checkpoint's model config differs from this run's (key: (checkpoint, now)): "
                f"{diff}; resume with the same model.* settings"
            )
        if self.data_config is not None and meta.get("data_config"):
            from nextok.checkpoint.resume import check_same_data

            check_same_data(meta["data_config"], self.data_config)
        self.tokens_seen = int(meta.get("tokens_seen", 0))
        if "rng" in meta:
            set_rng_state(meta["rng"])
