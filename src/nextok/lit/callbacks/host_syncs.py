"""Count host-device synchronisations per optimizer step (``debug=host_syncs``).

Why: every ``.item()`` / ``bool(t)`` / ``float(t)`` on a GPU tensor makes the host wait for the
GPU, which empties the launch queue. They are easy to add by accident and invisible in a profile
on CPU, so this callback counts them on any device: it wraps the ``torch.Tensor`` methods that
copy a value to the host (``item``, ``__bool__``, ``__float__``, ``__int__``, ``tolist``,
``numpy``, ``cpu``) for the duration of training and attributes each call to the optimizer step
it happened in. Calls made from ``torch/optim`` (AdamW's non-fused CPU path reads its step
counters; the fused CUDA path does not) and directly from the data pipeline (host tensors
before the batch is moved to the device) are not syncs on a GPU and are not counted.

A step is "steady" unless it logged (``trainer.log_every_n_steps``), validated, saved a
checkpoint, or was the first one; the summary gives the syncs per optimizer step of each kind.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from nextok.console import say
from nextok.io import atomic_write_text
from nextok.lit.callbacks.base import AfterBatch
from nextok.lit.lightning_private import is_log_step

SYNC_METHODS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy", "cpu")
EXCLUDED_PATHS = ("/torch/optim/", "/torch/utils/data/", "/nextok/data/")


@dataclass
class _StepSyncs:
    syncs: int = 0
    kinds: set[str] = field(default_factory=set)
    where: dict[str, int] = field(default_factory=dict)


class HostSyncCounter(AfterBatch):
    """Counts host syncs per optimizer step; prints a summary and writes ``host_syncs.json``.

    Args:
        out_file: where to write the summary (default: ``<trainer.default_root_dir>/host_syncs.json``).
    """

    def __init__(self, out_file: str | None = None) -> None:
        self.out_file = out_file
        self._originals: dict[str, Any] = {}
        self._steps: dict[int, _StepSyncs] = {}
        self._current: _StepSyncs | None = None
        self._local = threading.local()
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ patching
    def _install(self) -> None:
        for name in SYNC_METHODS:
            original = getattr(torch.Tensor, name)
            self._originals[name] = original
            setattr(torch.Tensor, name, self._wrap(name, original))

    def _uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        self._originals.clear()

    def _wrap(self, name: str, original: Any) -> Any:
        counter = self

        def wrapper(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if counter._current is not None and not getattr(counter._local, "busy", False):
                counter._local.busy = True  # our own frame walk must not count itself
                try:
                    counter._record(name)
                finally:
                    counter._local.busy = False
            return original(tensor, *args, **kwargs)

        wrapper.__name__ = name
        return wrapper

    def _record(self, name: str) -> None:
        frame = sys._getframe(2)  # the code that called the tensor method
        if any(p in frame.f_code.co_filename.replace("\\", "/") for p in EXCLUDED_PATHS):
            return
        caller = None  # for the report: the first frame outside torch and Lightning
        while frame is not None and caller is None:
            path = frame.f_code.co_filename.replace("\\", "/")
            if not any(p in path for p in ("/torch/", "/lightning/", "/lightning_utilities/")):
                caller = f"{path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}:{frame.f_lineno}"
            frame = frame.f_back
        step = self._current
        step.syncs += 1
        if os.environ.get("NEXTOK_SYNC_TRACE"):
            import traceback

            traceback.print_stack(sys._getframe(2), limit=12)
        key = f"{name} @ {caller}"
        step.where[key] = step.where.get(key, 0) + 1

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._originals:
            self._install()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step not in self._steps:
            self._steps[step] = _StepSyncs(kinds={"first"} if not self._steps else set())
        self._current = self._steps[step]

    def after_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int) -> None:
        if self._current is not None and is_log_step(trainer):
            self._current.kinds.add("log")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._current is not None:
            self._current.kinds.add("validation")

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._current is not None:
            self._current.kinds.add("checkpoint")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._current = None
        self._uninstall()
        self.summary = self._summarise()
        self._report(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException):
        self._current = None
        self._uninstall()

    # ------------------------------------------------------------------ summary
    def _summarise(self) -> dict[str, Any]:
        groups: dict[str, list[_StepSyncs]] = {"steady": [], "log": [], "other": []}
        for s in self._steps.values():
            kind = "steady" if not s.kinds else ("log" if s.kinds == {"log"} else "other")
            groups[kind].append(s)
        out: dict[str, Any] = {"steps": len(self._steps)}
        for kind, steps in groups.items():
            out[kind] = {
                "steps": len(steps),
                "syncs_per_step": sum(s.syncs for s in steps) / len(steps) if steps else None,
            }
        total = sum(s.syncs for s in self._steps.values())
        out["all"] = {"steps": len(self._steps), "syncs_per_step": total / max(1, len(self._steps))}
        where: dict[str, int] = {}
        for s in groups["steady"]:
            for k, v in s.where.items():
                where[k] = where.get(k, 0) + v
        out["steady_sources"] = dict(sorted(where.items(), key=lambda kv: -kv[1]))
        return out

    @rank_zero_only
    def _report(self, trainer: L.Trainer) -> None:
        s = self.summary

        def fmt(kind: str) -> str:
            v = s[kind]["syncs_per_step"]
            return f"{kind} {'-' if v is None else f'{v:.2f}'} ({s[kind]['steps']} steps)"

        say(
            "host syncs per optimizer step: "
            + ", ".join(fmt(k) for k in ("steady", "log", "other", "all"))
        )
        for k, v in list(s["steady_sources"].items())[:5]:
            say(f"  steady-state sync: {v}x {k}")
        path = Path(self.out_file or Path(trainer.default_root_dir) / "host_syncs.json")
        atomic_write_text(path, json.dumps(s, indent=2) + "\n")
