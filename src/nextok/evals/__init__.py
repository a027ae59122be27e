"""Downstream evaluation: multiple-choice tasks scored by log-likelihood (plain PyTorch).

``tasks``: what an example is and where it comes from (HF datasets through a field mapping, or the
embedded ``stdlib_next_line``); ``scoring``: batched, data-parallel-sharded ``acc``/``acc_norm``
(and the calibrated ``acc_pmi`` for tasks with ``pmi: true``).
"""

from nextok.evals.scoring import (
    METRICS,
    TaskResult,
    context_prefix,
    document_start,
    evaluate_task,
    loglikelihoods,
)
from nextok.evals.tasks import MCExample, load_task, scoring_options

__all__ = [
    "METRICS",
    "MCExample",
    "TaskResult",
    "context_prefix",
    "document_start",
    "evaluate_task",
    "load_task",
    "loglikelihoods",
    "scoring_options",
]
