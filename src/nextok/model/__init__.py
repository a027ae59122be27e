"""Pure-PyTorch decoder-only transformer. Imports neither Lightning nor Hydra."""

from nextok.model.config import PRESETS, ModelConfig
from nextok.model.kv_cache import AttentionCache, KVCache
from nextok.model.masks import document_ids
from nextok.model.transformer import Transformer

__all__ = ["PRESETS", "AttentionCache", "KVCache", "ModelConfig", "Transformer", "document_ids"]
