"""``nextok-train``: the Hydra training app (config tree in ``conf/``, entry config ``train.yaml``).

Examples::

    nextok-train                                   # tiny model on the stdlib corpus, CPU
    nextok-train experiment=tinystories trainer=gpu
    nextok-train model.n_layer=2 trainer.max_steps=100 logger=many
    nextok-train hydra.run.dir=runs/my_run resume=auto   # continue a run where it stopped
    nextok-train --cfg job                         # print the composed config and exit
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from nextok.cli._conf import conf_dir
from nextok.cli.errors import EXIT_BAD_INPUT, CliError, one_line_errors
from nextok.console import say

if TYPE_CHECKING:
    from nextok.run.signals import StopRequested

PROG = "nextok-train"


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # outside the run's own handling (and after it)
        signal.signal(sig, _exit_on_signal)
    from hydra.core.hydra_config import HydraConfig

    from nextok.lit.module import NonFiniteLossError
    from nextok.run.app import run_training  # heavy imports after Hydra has parsed the command line
    from nextok.run.init_from import model_overrides
    from nextok.run.lock import RunDirLocked
    from nextok.run.signals import StopRequested

    with one_line_errors(
        PROG,
        exit_codes=[(NonFiniteLossError, 3), ((TimeoutError, RunDirLocked), EXIT_BAD_INPUT)],
        interrupted="interrupted; nothing was saved since the last checkpoint",
    ):
        overrides = list(HydraConfig.get().overrides.task)
        cfg = continued_config(cfg, overrides)
        try:
            metrics = run_training(cfg, model_overrides(overrides))
        except StopRequested as e:  # Ctrl-C / SIGTERM in any phase (nextok.run.signals)
            say(stop_line(e, Path(cfg.run_dir), overrides), all_ranks=True, file=sys.stderr)
            _ignore_further_signals()
            sys.exit(e.exit_code)
        except (ValueError, FileNotFoundError, TimeoutError):  # bad config or input: status 2
            raise
        except OSError as e:  # read-only or full disk, permissions: name the path
            raise CliError(describe_os_error(e), exit_code=1) from e
    _close_process_group()
    return metrics.get("val/loss")


def _close_process_group() -> None:
    """Every rank leaves the process group together, after training, while all its threads are
    alive: left to interpreter shutdown (Lightning's atexit), a rank tearing gloo down while its
    peer already has can abort (``terminate called without an active exception``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def continued_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``resume=auto`` in a run dir with a saved config: that config, as the command changed it
    (:mod:`nextok.run.resume_config`); otherwise ``cfg``."""
    from nextok.run.resume_config import resumed_config

    resumed, kept = resumed_config(cfg, overrides)
    if resumed is not cfg:
        say(
            f"resume=auto: continuing the run saved in {cfg.run_dir}/config.yaml"
            + (f"; kept its {', '.join(kept[:6])}" if kept else "")
            + (f" and {len(kept) - 6} more keys" if len(kept) > 6 else "")
        )
    return resumed


def _exit_on_signal(signum: int, frame: object) -> None:
    """A signal before the run's :class:`~nextok.run.signals.SignalGuard` is installed, or while
    the stop line is printed: stop at once, with the contract's exit status."""
    _ignore_further_signals()
    raise SystemExit(128 + signum)


def _ignore_further_signals() -> None:
    """The process is exiting with its signal status: Python's shutdown would reset its handlers
    to the default, and a late signal would then kill it (exit -2 instead of 130); ignored
    signals stay ignored through shutdown."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def stop_line(e: StopRequested, run_dir: Path, overrides: list[str]) -> str:
    """What a signal left behind, and the command that continues the run (shell-quoted)."""
    from nextok.checkpoint.resume import find_resume_checkpoint

    if not run_dir.exists():
        return f"{e}; nothing was saved (the new run dir {run_dir} was removed)"
    ckpt = find_resume_checkpoint(run_dir)
    if ckpt is None:
        saved = "no checkpoint was saved yet"
    elif e.phase == "train" and not e.at_once:
        saved = f"saved {ckpt}"
    else:
        saved = f"the latest checkpoint is {ckpt}"
    return f"{e}; {saved}. Continue with: {resume_command(PROG, run_dir, overrides)}"


# overrides the resume command sets itself (the others are the run's own and are repeated)
_RESUME_SETS = re.compile(r"^[+~]*(hydra\.run\.dir|resume|ckpt_path)(=|$)")


def resume_command(prog: str, run_dir: Path, overrides: list[str]) -> str:
    """The command that continues this run: its own command-line overrides, its run dir and
    ``resume=auto``, each argument quoted for a POSIX shell (a run dir may hold spaces)."""
    keep = [o for o in overrides if not _RESUME_SETS.match(o)]
    text = str(run_dir)
    if not re.fullmatch(r"[\w./-]+( +[\w./-]+)*", text):  # Hydra's quoting for other characters
        text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    args = [*keep, f"hydra.run.dir={text}", "resume=auto"]
    return " ".join([prog, *(shlex.quote(a) for a in args)])


def describe_os_error(e: OSError) -> str:
    """One line for a failed write: what, where, and that earlier checkpoints are untouched."""
    text = e.strerror or str(e)
    if e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    if "previous checkpoint" not in text:
        text += " (checkpoints written before this are intact)"
    return text


if __name__ == "__main__":
    main()
