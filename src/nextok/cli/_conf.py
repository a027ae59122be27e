"""Locate the Hydra config tree for console scripts.

Hydra resolves a relative ``config_path`` against the calling module, which breaks for console
scripts and for non-editable installs (``conf/`` sits beside ``src/``, outside the package). We
therefore compute an absolute path before ``hydra.main``: a source checkout / editable install
uses the top-level ``conf/``; a wheel carries a copy at ``nextok/conf`` (see pyproject.toml).
``NEXTOK_CONFIG_DIR`` overrides both.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from omegaconf import OmegaConf

from nextok.run.model_presets import register_model_presets

_PKG = Path(__file__).resolve().parents[1]

# ${sysconfig:purelib} etc. in configs: this interpreter's install paths (conf/data/mixture.yaml)
OmegaConf.register_new_resolver("sysconfig", lambda key: sysconfig.get_paths()[key], replace=True)
# model=<preset>: the presets of nextok.model.presets, as options of the `model` group
register_model_presets()


def conf_dir() -> str:
    """Absolute path of the config tree to use."""
    env = os.environ.get("NEXTOK_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates += [_PKG.parents[1] / "conf", _PKG / "conf"]
    for c in candidates:
        if (c / "train.yaml").is_file():
            return str(c)
    raise FileNotFoundError(
        "nextok config tree not found (looked in: "
        + ", ".join(str(c) for c in candidates)
        + "); set NEXTOK_CONFIG_DIR to a folder holding train.yaml"
    )
