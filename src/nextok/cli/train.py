"""``nextok-train``: the Hydra training app (config tree in ``conf/``, entry config ``train.yaml``).

Examples::

    nextok-train                                   # tiny model on the stdlib corpus, CPU
    nextok-train experiment=tinystories trainer=gpu
    nextok-train model.n_layer=2 trainer.max_steps=100 logger=many
    nextok-train hydra.run.dir=runs/my_run resume=auto   # continue a run where it stopped
    nextok-train --cfg job                         # print the composed config and exit
"""

from __future__ import annotations

import os
import sys
import traceback

import hydra
from omegaconf import DictConfig

from nextok.cli._conf import conf_dir


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from nextok.lit.app import train  # heavy imports after Hydra has parsed the command line
    from nextok.lit.init_from import model_overrides
    from nextok.lit.module import NonFiniteLossError
    from nextok.lit.run_lock import RunDirLocked
    from nextok.lit.signals import StopRequested

    try:
        metrics = train(cfg, model_overrides(list(HydraConfig.get().overrides.task)))
    except StopRequested as e:  # Ctrl-C / SIGTERM: the step finished and last.ckpt was saved
        print(
            f"[nextok] {e}; saved {cfg.run_dir}/checkpoints/last.ckpt. Continue with: "
            f"nextok-train hydra.run.dir={cfg.run_dir} resume=auto",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:  # before training started, or a second Ctrl-C
        _fail(RuntimeError("interrupted; nothing was saved since the last checkpoint"), 130, e)
    except NonFiniteLossError as e:
        _fail(e, 3)
    except (ValueError, FileNotFoundError, TimeoutError, RunDirLocked) as e:  # bad config or input
        _fail(e, 2)
    except OSError as e:  # read-only or full disk, permissions: name the path
        _fail(RuntimeError(describe_os_error(e)), 1, e)
    return metrics.get("val/loss")


def describe_os_error(e: OSError) -> str:
    """One line for a failed write: what, where, and that earlier checkpoints are untouched."""
    text = e.strerror or str(e)
    if e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    if "previous checkpoint" not in text:
        text += " (checkpoints written before this are intact)"
    return text


def _fail(e: BaseException, code: int, cause: BaseException | None = None) -> None:
    """A one-line error (the full traceback with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(cause or e)
    print(f"nextok-train: error: {e}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
