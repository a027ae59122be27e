"""The one way nextok talks to the user: ``[nextok] ...`` lines, printed once (on rank 0).

Lightning's own messages go through ``logging``; nextok's go through :func:`say`, so every line a
user reads from nextok starts with the same prefix and a multi-process run prints it once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

PREFIX = "[nextok]"


def is_rank_zero() -> bool:
    """This process is global rank 0. Before a process group exists Lightning takes the rank from
    the environment (RANK, LOCAL_RANK, SLURM_PROCID); its strategies update it at set-up."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only  # lazy: CLIs start fast

    return rank_zero_only.rank == 0


def say(
    msg: str,
    *,
    all_ranks: bool = False,
    file: TextIO | None = None,
    via: Callable[[str], None] | None = None,
) -> None:
    """Print ``[nextok] msg`` (flushed) on rank 0, or on every rank with ``all_ranks``.

    ``via``: a print function to use instead, e.g. ``LightningModule.print``, which writes above
    an active progress bar instead of through it."""
    if not (all_ranks or is_rank_zero()):
        return
    if via is not None:
        via(f"{PREFIX} {msg}")
    else:
        print(f"{PREFIX} {msg}", file=file or sys.stdout, flush=True)
