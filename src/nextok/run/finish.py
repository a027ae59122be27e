"""The end of a training run: validate the final weights on the whole held-out split, then say
how the run ended in one summary.

Periodic validations may cover a fixed subset of the validation split (``data.max_val_batches``)
to stay cheap; the figure a run reports at the end must not be such a subset (on the default run a
subset reads lower than the whole split). So after ``trainer.fit`` the final weights
are validated once more with no batch limit, through the same ``LMModule.validation_step``, and
that is the ``val/loss`` the run returns, prints and logs last. ``nextok-eval`` with its defaults
scores the same blocks and reproduces it.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer


def max_time_stop(trainer: L.Trainer) -> tuple[int, int] | None:
    """(step reached, max_steps) when the ``max_time`` budget ended training early, else None."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None or timer.time_remaining("train") is None:
        return None
    if timer.time_remaining("train") > 0 or not 0 < trainer.global_step < trainer.max_steps:
        return None
    return trainer.global_step, trainer.max_steps


def validate_whole_split(
    trainer: L.Trainer, module: L.LightningModule, datamodule: Any
) -> float | None:
    """Validate the current weights on every block of the validation split; the loss or None.

    Skipped for ``fast_dev_run``, when validation is disabled, and after an interruption.
    """
    if trainer.fast_dev_run or trainer.limit_val_batches == 0 or trainer.interrupted:
        return None
    if getattr(datamodule, "is_streaming", False) and datamodule.max_val_batches is not None:
        # a held-out stream can be huge (1% of a web corpus): keep its cap, and say so
        module.val_scope = f"the first {datamodule.max_val_batches} batches of the held-out stream"
    else:
        if hasattr(datamodule, "max_val_batches"):
            datamodule.max_val_batches = None
        module.val_scope = "the whole held-out split"
    trainer.validate(module, datamodule=datamodule, verbose=False)
    loss = trainer.callback_metrics.get("val/loss")
    return None if loss is None else float(loss)


def summary(
    trainer: L.Trainer, module: L.LightningModule, val_loss: float | None, baseline: float | None
) -> list[str]:
    """The lines that close a run: how it stopped and its final validation figure."""
    lines = []
    stop = max_time_stop(trainer)
    if stop is not None:
        lines.append(f"stopped by max_time at step {stop[0]} of {stop[1]}")
    if val_loss is not None:
        tokens = trainer.callback_metrics.get("val/tokens")
        where = getattr(module, "val_scope", "the validation split")
        where += f" ({int(tokens):,} tokens)" if tokens is not None else ""
        bpb = trainer.callback_metrics.get("val/bpb")
        line = (
            f"final val loss {val_loss:.4f} (ppl {math.exp(val_loss):.1f}"
            + (f", {float(bpb):.4f} bits/byte" if bpb is not None else "")
            + f") on {where}"
        )
        if baseline is not None:
            line += (
                f" vs unigram baseline {baseline:.4f} (ppl {math.exp(baseline):.1f}): "
                f"{abs(baseline - val_loss):.4f} nats/token "
                + ("better" if val_loss <= baseline else "WORSE (the model has not learned yet)")
            )
        lines.append(line)
    return lines
