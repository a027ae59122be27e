"""The run's plan: the composed config resolved once, before any object is built.

:func:`resolve_plan` decides everything the config leaves open (the checkpoint to resume,
``init_from``'s weights and model config, where the tokenizer comes from, the batch
arithmetic), then resolves the config into plain values exactly once. The result is frozen:
``RunPlan.config`` is read-only (the nodes objects are built from), ``RunPlan.plain`` hands out
copies of the plain values (saved as ``config.yaml``, logged as hyperparameters, recorded in
checkpoints). Nothing writes into the composed config: ``init_from``'s model config and
tokenizer folder enter the plan as a merged copy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nextok.checkpoint.resume import resolve_ckpt_path
from nextok.run.config import accumulation, merged
from nextok.run.init_from import InitSource, load_init_source
from nextok.run.tokenizer_source import TokenizerSource, tokenizer_source


@dataclass(frozen=True)
class BatchPlan:
    """The batch arithmetic: micro-batch, global batch, run length in tokens."""

    micro: int  # data.batch_size (sequences per rank and micro-batch)
    block_size: int  # data.block_size
    global_batch_size: int | None = None
    global_batch_tokens: int | None = None
    max_tokens: float | None = None

    def accumulation(self, model_block_size: int, data_parallel: int) -> int:
        """Micro-batches per optimizer step (:func:`nextok.run.config.accumulation`)."""
        spec = {
            "global_batch_size": self.global_batch_size,
            "global_batch_tokens": self.global_batch_tokens,
        }
        return accumulation(spec, self.micro, model_block_size, data_parallel)

    def tokens_per_step(self, data_parallel: int, accum: int) -> int:
        return self.micro * self.block_size * data_parallel * accum

    def max_steps(self, tokens_per_step: int) -> int | None:
        """``max_tokens`` as optimizer steps (None: ``trainer.max_steps`` decides)."""
        if self.max_tokens is None:
            return None
        return math.ceil(float(self.max_tokens) / tokens_per_step)


@dataclass(frozen=True)
class RunPlan:
    """What a run is, decided once: read by :func:`nextok.run.app.run_training`, never written."""

    run_dir: Path
    config: DictConfig  # read-only, resolved: the nodes objects are built from
    ckpt_path: str | None
    init: InitSource | None
    tokenizer: TokenizerSource
    batch: BatchPlan
    model_overrides: tuple[str, ...] = ()
    _values: dict[str, Any] = field(default_factory=dict, repr=False)

    def plain(self, *keys: str) -> Any:
        """A copy of the plain value at ``keys`` (the whole config when none)."""
        value: Any = self._values
        for key in keys:
            value = value[key]
        return copy.deepcopy(value)


def resolve_plan(
    config: DictConfig, model_overrides: list[str], run_dir: Path, writer: bool = True
) -> RunPlan:
    """The plan of a checked config (:func:`nextok.run.config_check.check_config`).

    ``model_overrides``: the ``model.*`` keys the user set (checked against ``init_from``);
    ``writer``: this process writes the run dir's files (global rank 0)."""
    init = load_init_source(config, model_overrides) if config.get("init_from") else None
    ckpt_path = resolve_ckpt_path(config.get("ckpt_path"), config.get("resume"), run_dir)
    data = config.get("data") or {}
    tokenizer = tokenizer_source(
        run_dir,
        data.get("tokenizer_path"),
        init,
        ckpt_path,
        bool(config.get("verify", True)),
        writer,
    )
    overlay: dict[str, Any] = {}
    if init is not None:
        overlay["model"] = init.config.to_dict()
    if tokenizer.kind == "init_from":
        overlay["data"] = {"tokenizer_path": tokenizer.path}
    if overlay:
        config = merged(config, overlay)
    values = OmegaConf.to_container(config, resolve=True)  # the one conversion
    frozen = OmegaConf.create(values)
    OmegaConf.set_struct(frozen, True)
    OmegaConf.set_readonly(frozen, True)
    data_values = values.get("data") or {}
    batch = BatchPlan(
        micro=int(data_values["batch_size"]),
        block_size=int(data_values["block_size"]),
        global_batch_size=values.get("global_batch_size"),
        global_batch_tokens=values.get("global_batch_tokens"),
        max_tokens=values.get("max_tokens"),
    )
    return RunPlan(
        run_dir, frozen, ckpt_path, init, tokenizer, batch, tuple(model_overrides), values
    )
