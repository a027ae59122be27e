"""The run directory's life around one training process (rank 0).

- one process at a time (:class:`~nextok.run.lock.RunDirLock`);
- temp files a killed process left (``checkpoints/.last.ckpt.tmp-<random>`` from an atomic save cut
  by ``kill -9``) are removed at the next start, under the lock, so nobody is writing them;
- a run that fails before training starts leaves no run dir behind when the dir was new (Hydra
  creates it, with ``.hydra/`` and ``train.log``, before the app runs): a typo must not litter
  ``runs/`` with empty timestamped folders.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nextok.console import say
from nextok.run.lock import LOCK_FILE, RunDirLock

HYDRA_ONLY = {".hydra", "train.log", LOCK_FILE}  # what a run dir holds before the app wrote to it


def is_new(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing of a run yet (absent, or only Hydra's files)."""
    return not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= HYDRA_ONLY


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files of interrupted atomic writes (checkpoints, config, tokenizer)."""
    found = [
        *(run_dir / "checkpoints").glob(".*.tmp-*"),
        *run_dir.glob(".*.tmp-*"),  # nextok.io.atomic_write (config, tokenizer, ids)
        *run_dir.glob(".config.yaml.tmp"),  # written by earlier versions
        *run_dir.glob(".tokenizer.json.tmp"),
    ]
    for p in found:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return found


class RunState:
    """Set ``started = True`` once training began: from then on the dir is kept on failure."""

    started = False


@contextmanager
def run_dir_session(run_dir: Path, rank0: bool) -> Iterator[RunState]:
    state = RunState()
    if not rank0:
        yield state
        return
    new = is_new(run_dir)
    lock = RunDirLock(run_dir).acquire()
    try:
        if lock.took_over is not None:
            say(
                f"took over the stale lock of pid {lock.took_over.get('pid')} "
                f"on {lock.took_over.get('host')}"
            )
        removed = remove_stale_temp_files(run_dir)
        if removed:
            say(
                f"removed {len(removed)} temp file(s) of an interrupted write: "
                + ", ".join(str(p.relative_to(run_dir)) for p in removed)
            )
        yield state
    except BaseException:
        lock.release()
        if new and not state.started:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()
