"""Downstream evaluation: multiple-choice tasks scored by log-likelihood (plain PyTorch).

``tasks``: what an example is and where it comes from (HF datasets through a field mapping, or the
embedded ``stdlib_next_line``); ``scoring``: batched, data-parallel-sharded ``acc``/``acc_norm``.
"""

from nextok.evals.scoring import TaskResult, evaluate_task, loglikelihoods
from nextok.evals.tasks import MCExample, load_task

__all__ = ["MCExample", "TaskResult", "evaluate_task", "load_task", "loglikelihoods"]
