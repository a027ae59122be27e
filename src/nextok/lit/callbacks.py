"""Callbacks Lightning lacks or gets slightly wrong for LM training."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.callbacks import ThroughputMonitor as _LightningThroughputMonitor
from lightning.pytorch.callbacks.progress.rich_progress import (
    RichProgressBar as _LightningRichProgressBar,
)
from lightning.pytorch.callbacks.progress.tqdm_progress import TQDMProgressBar
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from nextok.console import say
from nextok.lit.compat import (
    is_accumulating,
    is_log_step,
    log_metrics,
    rich_bar_settings,
    should_update_logs,
    tqdm_bar_settings,
)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, plus: ``last`` is also written after the final step.

    Lightning 2.6 writes ``last`` at train end only if it never wrote one, so a run stopped by
    ``max_steps``/``max_time`` between two save intervals would lose its final steps. Saving in
    ``on_train_end`` instead would record the epoch as finished (resume would start a new epoch
    with other data); saving in ``on_train_batch_end`` of the final step keeps the mid-epoch
    position, exactly like the periodic saves.

    ``resuming`` (set by :func:`nextok.lit.build.build_trainer` for a resumed run): the
    checkpoint folder holds the run's own checkpoints, so Lightning's "Checkpoint directory ...
    exists and is not empty" warning is silenced; a fresh run in a used folder still gets it.
    """

    resuming = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        with warnings.catch_warnings():
            if self.resuming:
                warnings.filterwarnings(
                    "ignore", message=r"Checkpoint directory .* exists and is not empty"
                )
            super().setup(trainer, pl_module, stage)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final = trainer.should_stop or (0 < trainer.max_steps <= trainer.global_step)
        if (
            final
            and self.save_last
            and not is_accumulating(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:  # Lightning's train-end fallback ignores fast_dev_run
            super().on_train_end(trainer, pl_module)


def _batch_size(batch: Any) -> int:
    return int(batch[0].shape[0])


def _batch_tokens(batch: Any) -> int:
    return int(batch[0].numel())


class LogStepMetrics:
    """Progress-bar numbers refreshed at log steps only, training numbers as host floats.

    Lightning converts every metric logged with ``prog_bar=True`` to a Python number after every
    batch (one host-device sync each, also for values logged steps ago). So training logs none:
    the module and the throughput monitor put host floats, read at log steps, in
    ``pl_module.progress_bar`` (loss, tok/s), which this bar shows next to Lightning's own
    (validation loss), refreshed at log steps and after validation.
    """

    _shown: dict[str, Any] | None = None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        fresh = not trainer.training or is_log_step(trainer) or trainer.should_stop
        if self._shown is None or fresh:
            shown = super().get_metrics(trainer, pl_module)
            self._shown = {**shown, **getattr(pl_module, "progress_bar", {})}
        return self._shown


class ProgressBar(LogStepMetrics, TQDMProgressBar):
    """Lightning's tqdm bar, metrics refreshed at log steps (see :class:`LogStepMetrics`)."""


class RichProgressBar(LogStepMetrics, _LightningRichProgressBar):
    """Lightning's rich bar, metrics refreshed at log steps (see :class:`LogStepMetrics`)."""


def sync_free_progress_bar(bar: Any) -> L.Callback | None:
    """The log-step twin of Lightning's default bar ``bar`` (same settings); None for others."""
    if type(bar) is TQDMProgressBar:
        return ProgressBar(*tqdm_bar_settings(bar))
    if type(bar) is _LightningRichProgressBar:
        return RichProgressBar(*rich_bar_settings(bar))
    return None


class ThroughputMonitor(_LightningThroughputMonitor):
    """Tokens/s, samples/s and MFU over a sliding window, using the module's ``flops_per_batch``.

    The device peak comes from Lightning's table of common accelerators (H100, A100, L4, ...)
    for the run's precision; ``peak_flops`` (per device, FLOP/s) overrides it, e.g. for CPUs or
    cards not in the table. Also shows tokens/s in the progress bar.

    Unlike Lightning's monitor, which synchronises the GPU after every batch to read the clock,
    training batches are only counted; the clock is read (one sync) at log steps, so the window
    is ``window_size`` log intervals.
    """

    def __init__(self, window_size: int = 20, peak_flops: float | None = None) -> None:
        super().__init__(
            batch_size_fn=_batch_size,
            length_fn=_batch_tokens,
            window_size=window_size,
            separator="/",
        )
        self.peak_flops = peak_flops
        self.tokens_per_sec: float | None = None
        self._pending_flops: dict[Any, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.peak_flops:
            self.available_flops = int(self.peak_flops)
            for key in list(self._throughputs):
                self._throughputs[key] = Throughput(
                    available_flops=self.available_flops,
                    world_size=trainer.world_size,
                    **self.kwargs,
                )
        if stage == TrainerFn.FITTING:
            peak = self.available_flops
            say(
                "MFU peak per device: "
                + (f"{peak / 1e12:.1f} TFLOP/s" if peak else "unknown (set peak_flops to log MFU)")
            )

    @torch.inference_mode()
    def _update(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, iter_num: int
    ) -> None:
        stage = trainer.state.stage
        self._lengths[stage] += _batch_tokens(batch)
        self._samples[stage] += _batch_size(batch)
        self._batches[stage] += 1
        flops = float(getattr(pl_module, "flops_per_batch", None) or 0.0)
        self._pending_flops[stage] = self._pending_flops.get(stage, 0.0) + flops
        training = stage == RunningStage.TRAINING
        if training and (is_accumulating(trainer) or not is_log_step(trainer)):
            return  # count only: no clock, no sync
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # the clock must see the finished work
        self._throughputs[stage].update(
            time=time.perf_counter() - self._t0s[stage],
            batches=self._batches[stage],
            samples=self._samples[stage],
            lengths=self._lengths[stage],
            flops=self._pending_flops.pop(stage, 0.0) or None,
        )

    def _compute(self, trainer: L.Trainer, iter_num: int | None = None) -> None:
        stage = trainer.state.stage
        if stage == RunningStage.TRAINING and not is_log_step(trainer):
            return  # the clock was not read: nothing new to compute
        if not self._throughputs[stage]._time:
            return
        metrics = self._throughputs[stage].compute()
        for key in ("batches_per_sec", "samples_per_sec", "items_per_sec", "flops_per_sec"):
            # global rates are only computed for world_size > 1; name them the same way always
            if key not in metrics and f"device/{key}" in metrics:
                metrics[key] = metrics[f"device/{key}"] * trainer.world_size
        if stage == RunningStage.TRAINING and "items_per_sec" in metrics:
            self.tokens_per_sec = metrics["items_per_sec"]
        if stage != RunningStage.TRAINING or not should_update_logs(trainer):
            return
        out = {
            f"{stage.value}/{k.replace('items', 'tokens').replace('lengths', 'tokens')}": v
            for k, v in metrics.items()
        }
        log_metrics(trainer, out, step=iter_num)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, *args)
        if self.tokens_per_sec is not None and hasattr(pl_module, "progress_bar"):
            pl_module.progress_bar["tok/s"] = round(float(self.tokens_per_sec))


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
    (``nextok.lit.finish.summary``).

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


__all__ = [
    "ModelCheckpoint",
    "ProgressBar",
    "RichProgressBar",
    "ThroughputMonitor",
    "UnigramBaseline",
    "unigram_loss",
]
