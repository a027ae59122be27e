"""The run log file handler of Hydra's job logging (``<run_dir>/train.log``).

Hydra opens the log file before the app runs, so a ``train.log`` that cannot be opened (a
folder of that name, a read-only run dir) failed with a Hydra traceback before any of nextok's
error handling. This handler turns that into nextok's one line and exit status 2.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nextok.cli.errors import EXIT_BAD_INPUT, exit_with_error


class RunLogFileHandler(logging.FileHandler):
    """``logging.FileHandler`` that reports an unopenable log file in one line and exits."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None) -> None:
        try:
            super().__init__(filename, mode=mode, encoding=encoding)
        except OSError as e:
            what = "is a folder" if Path(filename).is_dir() else f"cannot be opened ({e.strerror})"
            prog = f"nextok-{Path(filename).stem}"
            exit_with_error(
                prog,
                f"the run log {filename} {what}; move it away or choose another hydra.run.dir",
                EXIT_BAD_INPUT,
                e,
            )
