"""Every private or undocumented Lightning (and Hydra) API nextok uses, each behind one function.

Lightning's public API has no way to ask some things nextok needs (is this batch a log step? is
this micro-batch accumulating?). Reaching into its internals is the price; this module keeps that
price in one place. When Lightning changes, ``tests/lit/test_lightning_private.py`` (which calls every
function here on a real Trainer) fails and names the accessor to fix, instead of a training run
misbehaving quietly. Checked against lightning 2.6.

Subclasses that override private hooks (``ModelCheckpoint``, ``ThroughputMonitor`` in
:mod:`nextok.lit.callbacks`, the rich progress bar in :mod:`nextok.lit.callbacks.progress`) list what they
rely on in :data:`OVERRIDDEN_PRIVATE_HOOKS`; the test checks those hooks exist and that
the subclasses' effects still show on a real run.

One Lightning internal is read outside ``lit/`` (a package that may not import this module):
:mod:`nextok.distributed.ranks` reads a ``ModelParallelStrategy``'s ``_tensor_parallel_size``
(checked against the real strategy by the test).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import lightning as L

# (Lightning class, private members a nextok subclass calls or overrides) - checked by the test
OVERRIDDEN_PRIVATE_HOOKS: dict[str, tuple[str, ...]] = {
    "lightning.pytorch.callbacks.ModelCheckpoint": (
        "_should_skip_saving_checkpoint",
        "_save_last_checkpoint",
        "_monitor_candidates",
        "_last_global_step_saved",
    ),
    "lightning.pytorch.callbacks.ThroughputMonitor": (
        "_update",
        "_compute",
        "_throughputs",
        "_lengths",
        "_samples",
        "_batches",
        "_t0s",
        "kwargs",
    ),
    "lightning.pytorch.callbacks.RichProgressBar": ("_get_train_description",),
}


def should_update_logs(trainer: L.Trainer) -> bool:
    """True during the training batch whose metrics Lightning writes to the loggers
    (every ``log_every_n_steps``-th step). Reaches ``trainer._logger_connector.should_update_logs``:
    the same decision Lightning takes, so nextok's host-side reads happen on the steps it logs."""
    return bool(trainer._logger_connector.should_update_logs)


def is_log_step(trainer: L.Trainer) -> bool:
    """:func:`should_update_logs`, or any batch under ``fast_dev_run`` (which logs nothing but
    should still show numbers in the progress bar)."""
    return should_update_logs(trainer) or bool(trainer.fast_dev_run)


def log_metrics(trainer: L.Trainer, metrics: dict[str, float], step: int | None = None) -> None:
    """Send ``metrics`` to every logger now, as Lightning sends ``self.log`` values.

    Reaches ``trainer._logger_connector.log_metrics`` (adds the step and epoch the way Lightning
    does; callbacks have no public ``log``)."""
    trainer._logger_connector.log_metrics(metrics, step=step)


def is_accumulating(trainer: L.Trainer) -> bool:
    """True while the current micro-batch is not the last of an optimizer step (gradient
    accumulation): no optimizer step follows this batch.

    Reaches ``trainer.fit_loop._should_accumulate()``."""
    return bool(trainer.fit_loop._should_accumulate())


def set_max_steps(trainer: L.Trainer, max_steps: int) -> None:
    """Change ``max_steps`` after the Trainer was built (from a token budget: the step count
    needs the world size, which the Trainer decides). ``Trainer.max_steps`` has no setter; the
    loop owns the value: ``trainer.fit_loop.epoch_loop.max_steps``."""
    trainer.fit_loop.epoch_loop.max_steps = max_steps


def hpc_save_path(trainer: L.Trainer) -> str:
    """Where Lightning's Slurm requeue writes (and on restart finds) its preemption checkpoint:
    ``<default_root_dir>/hpc_ckpt_<N>.ckpt``. Reaches
    ``trainer._checkpoint_connector.hpc_save_path``."""
    return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)


def cluster_environment(trainer: L.Trainer) -> Any:
    """The Trainer's cluster environment (``SLURMEnvironment``, ``LightningEnvironment``, ...),
    for every strategy (single-device ones have no ``cluster_environment``). Reaches
    ``trainer._accelerator_connector.cluster_environment``."""
    return trainer._accelerator_connector.cluster_environment


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The module's Trainer, or None when it is used on its own (``module.trainer`` raises then).
    Reaches ``LightningModule._trainer``."""
    return module._trainer


def tqdm_bar_settings(bar: Any) -> tuple[int, int, bool]:
    """``(refresh_rate, process_position, leave)`` of a ``TQDMProgressBar``, to build a twin with
    the same settings (``leave`` is stored as ``_leave`` only)."""
    return bar.refresh_rate, bar.process_position, bar._leave


def rich_bar_settings(bar: Any) -> tuple[int, bool, Any, dict[str, Any]]:
    """``(refresh_rate, leave, theme, console_kwargs)`` of a ``RichProgressBar``, to build a twin
    with the same settings (``leave``/``console_kwargs`` are stored as private attributes)."""
    return bar.refresh_rate, bar._leave, bar.theme, bar._console_kwargs


def format_summary_table(*args: Any) -> str:
    """Lightning's model-summary table as text (the same layout as its own summary). Reaches
    ``lightning.pytorch.utilities.model_summary.model_summary._format_summary_table``."""
    from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

    return _format_summary_table(*args)


def teardown_inside(trainer: L.Trainer, around: Callable[[], AbstractContextManager[Any]]) -> None:
    """Run the Trainer's internal teardown inside ``around()`` from now on (idempotent).

    Reaches ``Trainer._teardown``: called at the end of every ``fit``/``validate``, and once more
    when one of them raises. It is not re-entrant: an exception raised partway through it (by a
    signal handler) makes that second call fail with Lightning's own error ("Please call
    `iter(combined_loader)` first"), which then replaces the first exception."""
    if getattr(trainer.__dict__.get("_teardown"), "around", None) is not None:
        return
    teardown = trainer._teardown

    def _teardown() -> None:
        with around():
            teardown()

    _teardown.around = around  # type: ignore[attr-defined]
    trainer._teardown = _teardown  # type: ignore[method-assign]


def locate(path: str) -> Any:
    """The object a Hydra ``_target_`` names (``"pkg.module.Class"``), the way
    ``hydra.utils.instantiate`` finds it. Reaches ``hydra._internal.utils._locate``
    (``hydra.utils.get_object`` logs an error for every miss; config checks probe quietly)."""
    from hydra._internal.utils import _locate

    return _locate(path)
