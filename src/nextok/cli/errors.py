"""How every nextok command reports a failure the user can fix: one line on stderr,
``nextok-<cli>: error: <what, where, what was expected>``, and an exit status (2 for bad input).

The full traceback is printed above that line only with ``HYDRA_FULL_ERROR=1`` (Hydra's own
switch, so one variable serves every command). Each entry point wraps its work in
:func:`one_line_errors`; code below it raises :class:`CliError` (or a ``ValueError`` /
``FileNotFoundError`` / ``IsADirectoryError``, which are bad input wherever they come from).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from hydra.errors import InstantiationException

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# what bad input raises anywhere in nextok (a config value, a path, a file's content)
BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, IsADirectoryError)


class CliError(Exception):
    """A failure reported as one line; ``exit_code`` is the process's exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_with_error(prog: str, message: object, exit_code: int, cause: BaseException) -> NoReturn:
    """Print ``<prog>: error: <message>`` (after the traceback of ``cause`` with
    ``HYDRA_FULL_ERROR=1``) and exit with ``exit_code``."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(cause)
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(exit_code)


@contextmanager
def one_line_errors(
    prog: str,
    exit_codes: Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], int]] = (),
    interrupted: str | None = None,
) -> Iterator[None]:
    """Turn the failures a user can fix into one line and an exit status.

    ``exit_codes``: more ``(exception types, status)`` pairs, tried in order before
    :data:`BAD_INPUT` (status 2). ``interrupted``: the line for Ctrl-C (status 130); None ends
    the output with a newline and says nothing (a command that streams text)."""
    try:
        yield
    except CliError as e:
        exit_with_error(prog, e, e.exit_code, e)
    except KeyboardInterrupt as e:
        if interrupted is None:
            print("", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        exit_with_error(prog, interrupted, EXIT_INTERRUPTED, e)
    except Exception as e:
        bad = _bad_constructor_argument(e)
        if bad is not None:  # a config value a constructor refused (Hydra's instantiate)
            exit_with_error(prog, bad, EXIT_BAD_INPUT, e)
        for types, code in (*exit_codes, (BAD_INPUT, EXIT_BAD_INPUT)):
            if isinstance(e, types):
                exit_with_error(prog, e, code, e)
        raise


def _bad_constructor_argument(e: Exception) -> str | None:
    """``<config node>: <why>`` when ``hydra.utils.instantiate`` failed because the constructor
    refused a value (a :data:`BAD_INPUT` error); None for anything else."""
    if not isinstance(e, InstantiationException) or not isinstance(e.__cause__, BAD_INPUT):
        return None
    node = re.search(r"full_key: (\S+)", str(e))
    return f"{node.group(1)}: {e.__cause__}" if node else str(e.__cause__)
