"""nextok's Lightning callbacks, one module each (``conf/callbacks`` names them here).

- ``base``: ``AfterBatch``, the small base of callbacks acting after a training batch
- ``checkpoint``: ``ModelCheckpoint`` (``last`` also after the final step)
- ``progress``: the progress bars (numbers refreshed at log steps)
- ``model_summary``: the summary table with training FLOPs per token
- ``throughput``: tokens/s and MFU
- ``unigram``: the unigram baseline loss
- ``sampling``: KV-cached samples during and after training
- ``downstream``: multiple-choice task accuracies every N steps
- ``mixture_tokens``: tokens seen per source of a data mixture
- ``host_syncs``: host-device syncs per optimizer step (``debug=host_syncs``)
- ``slurm_requeue``: checkpoint at a step boundary and requeue on Slurm's SIGUSR1
"""

from nextok.lit.callbacks.checkpoint import ModelCheckpoint
from nextok.lit.callbacks.downstream import DownstreamEval
from nextok.lit.callbacks.host_syncs import HostSyncCounter
from nextok.lit.callbacks.mixture_tokens import MixtureTokens
from nextok.lit.callbacks.model_summary import ModelSummaryWithFlops
from nextok.lit.callbacks.progress import (
    LogStepMetrics,
    ProgressBar,
    RichProgressBar,
    RunProgressBar,
    sync_free_progress_bar,
)
from nextok.lit.callbacks.sampling import SamplingCallback
from nextok.lit.callbacks.slurm_requeue import SlurmRequeue
from nextok.lit.callbacks.throughput import ThroughputMonitor
from nextok.lit.callbacks.unigram import UnigramBaseline, unigram_loss

__all__ = [
    "DownstreamEval",
    "HostSyncCounter",
    "LogStepMetrics",
    "MixtureTokens",
    "ModelCheckpoint",
    "ModelSummaryWithFlops",
    "ProgressBar",
    "RichProgressBar",
    "RunProgressBar",
    "SamplingCallback",
    "SlurmRequeue",
    "ThroughputMonitor",
    "UnigramBaseline",
    "sync_free_progress_bar",
    "unigram_loss",
]
