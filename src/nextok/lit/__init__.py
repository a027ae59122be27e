"""Lightning integration: the LightningModule, optimizer/schedules, callbacks, checkpoint IO."""

from nextok.lit.module import LMModule, NonFiniteLossError
from nextok.lit.optim import AdamWConfig, ScheduleConfig

__all__ = ["AdamWConfig", "LMModule", "NonFiniteLossError", "ScheduleConfig"]
