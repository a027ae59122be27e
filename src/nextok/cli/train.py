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

    try:
        metrics = train(cfg, model_overrides(list(HydraConfig.get().overrides.task)))
    except NonFiniteLossError as e:
        _fail(e, 3)
    except (ValueError, FileNotFoundError, TimeoutError) as e:  # bad config or input
        _fail(e, 2)
    return metrics.get("val/loss")


def _fail(e: BaseException, code: int) -> None:
    """A one-line error (the full traceback with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exc()
    print(f"nextok-train: error: {e}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
