"""Downstream multiple-choice evaluation during training (thin glue over :mod:`nextok.evals`)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from nextok.console import say
from nextok.distributed.ranks import data_parallel_rank_size
from nextok.evals import (
    METRICS,
    context_prefix,
    document_start,
    evaluate_task,
    load_task,
    scoring_options,
)
from nextok.evals.stdlib_task import skipped_for_data
from nextok.evals.tasks import MCExample
from nextok.lit.callbacks.base import AfterBatch
from nextok.lit.lightning_private import is_accumulating
from nextok.plain import to_plain


class DownstreamEval(AfterBatch):
    """Score ``tasks`` every ``every_n_steps`` optimizer steps and/or at the end of training.

    Logs ``eval/<task>/acc``, ``eval/<task>/acc_norm`` (and ``eval/<task>/acc_pmi`` for tasks
    with ``pmi: true``); examples are sharded over the data-parallel ranks and the counts
    all-reduced. At the end it prints each task's accuracies.

    Args:
        tasks: ``{name: spec}`` (``conf/tasks/*.yaml``; see :mod:`nextok.evals.tasks`).
        every_n_steps: also evaluate every N optimizer steps (null: only at the end).
        at_end: evaluate after the last step.
        batch_size: sequences (one per choice) per forward pass.
    """

    def __init__(
        self,
        tasks: dict[str, dict] | None = None,
        every_n_steps: int | None = None,
        at_end: bool = True,
        batch_size: int = 32,
    ) -> None:
        self.specs = to_plain(tasks) or {}
        self.every_n_steps = every_n_steps
        self.at_end = at_end
        self.batch_size = batch_size
        self._examples: dict[str, list[MCExample]] | None = None
        self.results: dict[str, dict[str, float]] = {}
        self._last_step = -1

    def examples(self) -> dict[str, list[MCExample]]:
        if self._examples is None:
            self._examples = {name: load_task(name, spec) for name, spec in self.specs.items()}
        return self._examples

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._skip_other_corpus_tasks(getattr(pl_module, "data_config", None))
            self.examples()  # bad task specs fail before training, not after
            for name, spec in self.specs.items():
                scoring_options(name, spec)

    def _skip_other_corpus_tasks(self, data: dict | None) -> None:
        """Drop the tasks that belong to a corpus the run does not train on (one line each)."""
        for name in [n for n, spec in self.specs.items() if skipped_for_data(spec, data)]:
            del self.specs[name]
            say(
                f"task {name} skipped: it belongs to the stdlib corpus and this run trains on "
                f"other data (tasks.{name}.corpus_only=false runs it anyway; tasks=[] runs none)"
            )

    def run(self, trainer: L.Trainer, pl_module: Any) -> dict[str, dict[str, float]]:
        rank, world = data_parallel_rank_size(trainer)
        model = pl_module.model
        start = document_start(pl_module.tokenizer, pl_module.special_tokens)  # for acc_pmi
        out = {}
        for name, examples in self.examples().items():
            res = evaluate_task(
                model,
                pl_module.tokenizer,
                examples,
                block_size=pl_module.model_config.block_size,
                batch_size=self.batch_size,
                device=pl_module.device,
                rank=rank,
                world_size=world,
                reduce=lambda t, op: trainer.strategy.reduce(t, reduce_op=op),
                start_ids=start,
                prefix_ids=context_prefix(pl_module.tokenizer, pl_module.special_tokens),
                **scoring_options(name, self.specs[name]),
            )
            out[name] = res.as_dict()
        metrics = {
            f"eval/{name}/{k}": r[k]
            for name, r in out.items()
            for k in METRICS
            if r.get(k) is not None
        }
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        self.results = out
        self._last_step = trainer.global_step
        return out

    def after_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int) -> None:
        n = self.every_n_steps
        step = trainer.global_step
        if (
            n
            and step > 0
            and step % n == 0
            and step != self._last_step
            and not is_accumulating(trainer)
        ):
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_end and self.specs and trainer.global_step != self._last_step:
            self.run(trainer, pl_module)
        if self.results:
            _report(self.results)


def _report(results: dict[str, dict[str, float]]) -> None:
    for name, r in results.items():
        say(
            f"eval {name}: acc {r['acc']:.4f}  acc_norm {r['acc_norm']:.4f}  "
            + (f"acc_pmi {r['acc_pmi']:.4f}  " if r.get("acc_pmi") is not None else "")
            + f"({int(r['n'])} examples; chance {r['chance']:.4f}"
            + (f"; {int(r['truncated'])} choices cut to the window" if r.get("truncated") else "")
            + ")"
        )
