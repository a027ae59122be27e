"""The unigram baseline: the loss of a model that ignores context, for the run's summary."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from nextok.console import say


def unigram_loss(train_tokens: np.ndarray, eval_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of ``eval_tokens`` under the add-one-smoothed unigram
    distribution of ``train_tokens``: the loss of a model that ignores context entirely."""
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size)
    probs = (counts + 1.0) / (counts.sum() + vocab_size)
    return float(-np.log(probs[np.asarray(eval_tokens, dtype=np.int64)]).mean())


def _first_tokens(tokens: Any, n: int) -> np.ndarray | None:
    """The first ``n`` tokens of an array-like (ndarray, memmap, sharded cache) as an ndarray."""
    if tokens is None:
        return None
    try:
        return np.asarray(tokens[: min(len(tokens), n)])
    except (TypeError, AttributeError):
        return None


def _batch_targets(loader: Any, max_batches: int) -> np.ndarray:
    if isinstance(loader, list | tuple):  # one validation loader per mixture source
        return np.concatenate([_batch_targets(x, max_batches) for x in loader])
    out = []
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        out.append(batch[1].reshape(-1).numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


class UnigramBaseline(L.Callback):
    """Log the unigram baseline at the start; the run's summary compares the final val loss with it
    (``nextok.run.finish.summary``).

    Uses (the first ``max_tokens`` of) the datamodule's token arrays when it has them
    (``train_tokens``/``val_tokens``), otherwise up to ``max_batches`` batches of each dataloader.
    """

    def __init__(self, max_batches: int = 200, max_tokens: int = 20_000_000) -> None:
        self.max_batches = max_batches
        self.max_tokens = max_tokens
        self.baseline: float | None = None

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is None:
            return
        train = _first_tokens(getattr(dm, "train_tokens", None), self.max_tokens)
        val = _first_tokens(getattr(dm, "val_tokens", None), self.max_tokens)
        if train is None or val is None:
            train = _batch_targets(dm.train_dataloader(), self.max_batches)
            val = _batch_targets(dm.val_dataloader(), self.max_batches)
        if len(train) == 0 or len(val) == 0:
            return
        vocab = max(pl_module.model_config.vocab_size, int(train.max()) + 1, int(val.max()) + 1)
        self.baseline = unigram_loss(train, val, vocab)
        say(
            f"unigram baseline on val: loss {self.baseline:.4f} (ppl {math.exp(self.baseline):.1f})"
        )
        for logger in trainer.loggers:
            logger.log_metrics({"baseline/unigram_loss": self.baseline}, step=trainer.global_step)
