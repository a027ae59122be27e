"""What a training run shows in the terminal: Lightning's console output without its noise, and
``train.log``. (nextok's own ``[nextok] ...`` lines come from :func:`nextok.console.say`.)

- the progress bar: ``Epoch 0/-2`` (Lightning prints ``max_epochs - 1`` even when it is -1 for a
  step-bounded run) and ``v_num: 0.000`` (the logger version, formatted as a metric) are dropped;
- the model summary: Lightning's ``Total FLOPs: 0`` (it counts FLOPs only for an
  ``example_input_array``) is replaced by the model's training FLOPs per token;
- Lightning's ``LeafSpec`` deprecation warning (raised inside Lightning itself) and its
  litlogger advertisement are filtered, and so is its "``srun`` is available but not used" hint
  outside a Slurm allocation (a machine with Slurm installed is not a Slurm job);
- ``<run_dir>/train.log`` receives everything the console shows (stdout and stderr, progress
  bar redraws reduced to their final state), not only the Python logging records. In a
  terminal, where the rich bar redraws itself with cursor moves every step, the log gets plain
  text instead: escape codes stripped, no bar redraws, and one bar line per log step.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, RichProgressBar

from nextok.lit.callbacks import LogStepMetrics
from nextok.lit.compat import format_summary_table, is_accumulating, is_log_step


def quiet_lightning() -> None:
    """Filter the messages every run printed that say nothing about the run."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    if "SLURM_JOB_ID" not in os.environ:  # inside an allocation the hint is a real one
        warnings.filterwarnings("ignore", message=r"The `srun` command is available")

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
    its numbers refresh at log steps (no host sync per step, see ``LogStepMetrics``). In a
    terminal its redraws stay out of ``train.log``, which gets one plain line per log step."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        tee = _terminal_tee()
        if tee is not None and not is_accumulating(trainer) and is_log_step(trainer):
            metrics = "  ".join(
                f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                for k, v in self.get_metrics(trainer, pl_module).items()
            )
            total = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
            tee.log_line(f"step {trainer.global_step}{total}  {metrics}".rstrip())

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


ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # CSI and two-byte sequences
BAR_GLYPHS = ("\u2501", "\u2578", "\u257a")  # the rich bar's ━ ╸ ╺
# the bar's metrics wrapped onto a second line of a narrow terminal: indented "name: value"s
BAR_TAIL = re.compile(r"^ {8,}(?:[\w/.\-]+: -?[\d.]+(?:e[+-]?\d+)? *)+(?=$|\[\d{4}-)")
# a log record (train.yaml's "[time][LEVEL] ...") the logging handler wrote behind a shown bar
RECORD_AFTER_BAR = re.compile(r" {2,}(\[\d{4}-\d\d-\d\d [^\]]*\]\[[A-Z]+\] .*)$")


class _Tee(io.TextIOBase):
    """Write to a stream and to a log file; carriage-return redraws keep only their last state.

    When the stream is a terminal, the log side keeps plain text: escape codes are stripped and
    lines drawn by the rich progress bar are dropped (:class:`RunProgressBar` logs one plain line
    per log step instead, through :meth:`log_line`)."""

    def __init__(self, stream: Any, log: io.TextIOBase) -> None:
        self.stream, self.log, self._line = stream, log, ""
        self.terminal = bool(getattr(stream, "isatty", lambda: False)())

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        self._line += text
        if "\n" in self._line:
            *done, self._line = self._line.split("\n")
            lines = [ln.rsplit("\r", 1)[-1] for ln in done]
            if self.terminal:
                lines = [plain for ln in lines if (plain := _plain(ln)) is not None]
            self.log.write("".join(ln + "\n" for ln in lines))
            self.log.flush()
        return n if n is not None else len(text)

    def log_line(self, line: str) -> None:
        """One line to the log only (the terminal shows it in the bar)."""
        self.log.write(line + "\n")
        self.log.flush()

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _plain(line: str) -> str | None:
    """A terminal line without escape codes; None for a bar redraw or an escape-only line."""
    plain = BAR_TAIL.sub("", ESCAPE.sub("", line)).rstrip()
    if any(g in plain for g in BAR_GLYPHS):
        record = RECORD_AFTER_BAR.search(plain)
        return record.group(1) if record else None
    if not plain and plain != line:
        return None
    return plain


def _terminal_tee() -> _Tee | None:
    """The stdout tee when it copies a terminal (also under rich's stdout redirection)."""
    out = getattr(sys.stdout, "rich_proxied_file", sys.stdout)
    return out if isinstance(out, _Tee) and out.terminal else None


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
