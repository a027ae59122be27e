"""Lightning integration: the LightningModule, callbacks, strategy, checkpoint IO."""

from nextok.lit.module import LMModule, NonFiniteLossError

__all__ = ["LMModule", "NonFiniteLossError"]
