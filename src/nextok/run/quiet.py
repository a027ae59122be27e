"""Filter the Lightning messages every run printed that say nothing about the run: its
``LeafSpec`` deprecation warning (raised inside Lightning itself), its litlogger advertisement,
and its "``srun`` is available but not used" hint outside a Slurm allocation."""

from __future__ import annotations

import logging
import os
import warnings


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
