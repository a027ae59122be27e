"""Validation of the LMModule: a loss tally per mixture source, one reduction per validation, and
``val/loss``, ``val/ppl``, ``val/bpb`` (and per source) logged once."""

from __future__ import annotations

from typing import Any

import torch

from nextok.console import say
from nextok.lit.lightning_private import attached_trainer
from nextok.metrics import LossTally, summarize, token_byte_lengths


class ValidationHooks:
    """Validation hooks of :class:`~nextok.lit.module.LMModule` (a mixin)."""

    def on_validation_epoch_start(self) -> None:
        self._sync_point()
        names = (
            getattr(self.trainer.datamodule, "val_names", None) if attached_trainer(self) else None
        )
        self._val_names = list(names) if names else None
        self._val = LossTally(len(self._val_names or [0]), self.token_bytes(), self.device)

    def token_bytes(self) -> torch.Tensor | None:
        """UTF-8 bytes per token id (for val/bpb), from the run's tokenizer; None without one."""
        if self._token_bytes is None and self.tokenizer is not None:
            self._token_bytes = torch.from_numpy(token_byte_lengths(self.tokenizer))
        return self._token_bytes

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch[0], batch[1]
        _, loss = self.model(x, y, doc_ids=self.doc_ids(x))
        self._val.add(dataloader_idx, loss, y)

    def on_validation_epoch_end(self) -> None:
        # one reduction per validation; per-source columns when the data is a mixture
        sums = self.trainer.strategy.reduce(self._val.sums, reduce_op="sum").cpu()
        with_bytes = self._val.token_bytes is not None
        total = summarize(sums.sum(dim=1), with_bytes)
        if not total:
            return
        self._last_val = (
            torch.tensor(total["loss"]),
            self.global_step,
            self.val_scope,
            int(total["tokens"]),
        )
        self.log("val/loss", total["loss"], prog_bar=True, sync_dist=False)
        self.log("val/ppl", total["ppl"], sync_dist=False)
        self.log("val/tokens", total["tokens"], sync_dist=False)  # how much of the split it covered
        if with_bytes:
            self.log("val/bpb", total["bpb"], sync_dist=False)
        for i, name in enumerate(self._val_names or []):
            part = summarize(sums[:, i], with_bytes)
            for key in ("loss", "bpb"):
                if key in part:
                    self.log(f"val/{key}/{name}", part[key], sync_dist=False)
        if self.val_scope and not self.trainer.sanity_checking:
            say(
                f"step {self.global_step}: val/loss {total['loss']:.4f} on "
                f"{self.val_scope} ({int(total['tokens']):,} tokens)",
                via=self.print,
            )
