"""``<run_dir>/train.log`` receives everything the console shows (stdout and stderr, progress-bar
redraws reduced to their final state), not only the Python logging records. In a terminal, where
the rich bar redraws itself with cursor moves every step, the log gets plain text instead: escape
codes stripped, no bar redraws, and one bar line per log step (written by the run's progress bar
through :meth:`Tee.log_line`)."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # CSI and two-byte sequences
BAR_GLYPHS = ("\u2501", "\u2578", "\u257a")  # the rich bar's ━ ╸ ╺
# the bar's metrics wrapped onto a second line of a narrow terminal: indented "name: value"s
BAR_TAIL = re.compile(r"^ {8,}(?:[\w/.\-]+: -?[\d.]+(?:e[+-]?\d+)? *)+(?=$|\[\d{4}-)")
# a log record (train.yaml's "[time][LEVEL] ...") the logging handler wrote behind a shown bar
RECORD_AFTER_BAR = re.compile(r" {2,}(\[\d{4}-\d\d-\d\d [^\]]*\]\[[A-Z]+\] .*)$")


class Tee(io.TextIOBase):
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


def terminal_tee() -> Tee | None:
    """The stdout tee when it copies a terminal (also under rich's stdout redirection)."""
    out = getattr(sys.stdout, "rich_proxied_file", sys.stdout)
    return out if isinstance(out, Tee) and out.terminal else None


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
    sys.stdout, sys.stderr = Tee(out, log), Tee(err, log)
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
