"""The LightningModule (``lm_module``) and its parts: building the model (``model_setup``),
validation (``validation``), the checkpoint's ``nextok`` entry (``checkpoint_hooks``), the
non-finite loss policy (``loss_guard``) and MoE routing statistics (``moe_monitor``)."""

from nextok.lit.module.lm_module import COMPILE_MODES, LMModule
from nextok.lit.module.loss_guard import NonFiniteLossError

__all__ = ["COMPILE_MODES", "LMModule", "NonFiniteLossError"]
