"""``nextok-train``: the Hydra training app (config tree in ``conf/``, entry config ``train.yaml``).

Examples::

    nextok-train                                   # tiny model on the stdlib corpus, CPU
    nextok-train experiment=tinystories trainer=gpu
    nextok-train model.n_layer=2 trainer.max_steps=100 logger=many
    nextok-train hydra.run.dir=runs/my_run resume=auto   # continue a run where it stopped
    nextok-train --cfg job                         # print the composed config and exit
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from nextok.cli._conf import conf_dir
from nextok.cli.errors import EXIT_BAD_INPUT, CliError, one_line_errors
from nextok.console import say

PROG = "nextok-train"


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from nextok.lit.app import run_training  # heavy imports after Hydra has parsed the command line
    from nextok.lit.init_from import model_overrides
    from nextok.lit.module import NonFiniteLossError
    from nextok.lit.run_lock import RunDirLocked
    from nextok.lit.signals import StopRequested

    with one_line_errors(
        PROG,
        exit_codes=[(NonFiniteLossError, 3), ((TimeoutError, RunDirLocked), EXIT_BAD_INPUT)],
        interrupted="interrupted; nothing was saved since the last checkpoint",
    ):
        try:
            metrics = run_training(cfg, model_overrides(list(HydraConfig.get().overrides.task)))
        except StopRequested as e:  # Ctrl-C / SIGTERM: the step finished and last.ckpt was saved
            say(
                f"{e}; saved {cfg.run_dir}/checkpoints/last.ckpt. Continue with: "
                f"nextok-train hydra.run.dir={cfg.run_dir} resume=auto",
                all_ranks=True,
                file=sys.stderr,
            )
            sys.exit(e.exit_code)
        except (ValueError, FileNotFoundError, TimeoutError):  # bad config or input: status 2
            raise
        except OSError as e:  # read-only or full disk, permissions: name the path
            raise CliError(describe_os_error(e), exit_code=1) from e
    return metrics.get("val/loss")


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
