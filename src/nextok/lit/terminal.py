"""What a training run shows in the terminal: Lightning's console output without its noise, and
``train.log``. (nextok's own ``[nextok] ...`` lines come from :func:`nextok.console.say`.)

- the progress bar: ``Epoch 0/-2`` (Lightning prints ``max_epochs - 1`` even when it is -1 for a
  step-bounded run) and ``v_num: 0.000`` (the logger version, formatted as a metric) are dropped;
- the model summary: Lightning's ``Total FLOPs: 0`` (it counts FLOPs only for an
  ``example_input_array``) is replaced by the model's training FLOPs per token;
- Lightning's ``LeafSpec`` deprecation warning (raised inside Lightning itself) and its
  litlogger advertisement are filtered;
- ``<run_dir>/train.log`` receives everything the console shows (stdout and stderr, progress
  bar redraws reduced to their final state), not only the Python logging records.
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, RichProgressBar

from nextok.lit.callbacks import LogStepMetrics
from nextok.lit.compat import format_summary_table


def quiet_lightning() -> None:
    """Filter the two messages every run printed that say nothing about the run."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

    class _NoAds(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = str(record.msg)
            return "litlogger" not in msg and "already configured with model summary" not in msg

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch"):
        logging.getLogger(name).addFilter(_NoAds())
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoAds())


class RunProgressBar(LogStepMetrics, RichProgressBar):
    """Lightning's rich progress bar without ``/-2`` after the epoch and without ``v_num``;
    its numbers refresh at log steps (no host sync per step, see ``LogStepMetrics``)."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            return super()._get_train_description(current_epoch)
        text = f"Epoch {current_epoch}"
        return f"{text:{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


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


class _Tee(io.TextIOBase):
    """Write to a stream and to a log file; carriage-return redraws keep only their last state."""

    def __init__(self, stream: Any, log: io.TextIOBase) -> None:
        self.stream, self.log, self._line = stream, log, ""

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        self._line += text
        if "\n" in self._line:
            *done, self._line = self._line.split("\n")
            self.log.write("".join(ln.rsplit("\r", 1)[-1] + "\n" for ln in done))
            self.log.flush()
        return n if n is not None else len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def tee_console(run_dir: Path) -> Callable[[], None]:
    """Copy stdout and stderr into ``<run_dir>/train.log`` (appending: a resumed run continues
    it). Hydra's own file handler for that file is removed: the tee already carries its records."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).name == "train.log":
            root.removeHandler(h)
            h.close()
    log = open(run_dir / "train.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
    swapped = []  # logging handlers bound to the original streams (Hydra's console handler)
    for h in root.handlers:
        if type(h) is logging.StreamHandler and h.stream in (out, err):
            swapped.append((h, h.stream))
            h.setStream(sys.stdout if h.stream is out else sys.stderr)

    def restore() -> None:
        """Put the streams back (for in-process callers) and close the file."""
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err
        for h, stream in swapped:
            h.setStream(stream)
        log.close()

    return restore
