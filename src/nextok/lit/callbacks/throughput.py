"""Tokens/s, samples/s and MFU, with the clock read at log steps only."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch.callbacks import ThroughputMonitor as _LightningThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage, TrainerFn

from nextok.console import say
from nextok.lit.lightning_private import (
    is_accumulating,
    is_log_step,
    log_metrics,
    should_update_logs,
)


def _batch_size(batch: Any) -> int:
    return int(batch[0].shape[0])


def _batch_tokens(batch: Any) -> int:
    return int(batch[0].numel())


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
