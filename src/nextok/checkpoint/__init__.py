"""nextok's checkpoints, plain PyTorch (no Lightning, no Hydra).

- ``format``: the ``nextok`` entry, ``meta.pt``, the ``model.`` prefix, a shorter context, RNG state
- ``file``: what a file given as a checkpoint is not (text, empty, truncated), before torch reads it
- ``verify``: per-tensor checksums recorded at save time, finite weights
- ``safe``: ``torch.load(weights_only=True)`` with one-line refusals (``safe_load``)
- ``load``: the model, config and tokenizer of a file or Hugging Face folder (``load_checkpoint``)
- ``save``: atomic writes (``atomic_torch_save``)
- ``dcp``: reading sharded (FSDP2) folders without running code from them
- ``resume``: which checkpoint a run resumes, and the tokenizer paired with its weights
- ``consolidate``: a sharded folder -> one file
"""

from nextok.checkpoint.format import CHECKPOINT_DIR, META_KEY, META_PT, model_state_dict
from nextok.checkpoint.load import (
    LoadedCheckpoint,
    checkpoint_meta,
    load_checkpoint,
    load_hf_checkpoint,
    verify_checkpoint,
)
from nextok.checkpoint.safe import UnsafeCheckpointError, safe_load
from nextok.checkpoint.save import atomic_torch_save

__all__ = [
    "CHECKPOINT_DIR",
    "META_KEY",
    "META_PT",
    "LoadedCheckpoint",
    "UnsafeCheckpointError",
    "atomic_torch_save",
    "checkpoint_meta",
    "load_checkpoint",
    "load_hf_checkpoint",
    "model_state_dict",
    "safe_load",
    "verify_checkpoint",
]
