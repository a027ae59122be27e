"""Hugging Face format out and in (Llama 1-3.x / SmolLM, Mistral, Qwen2/2.5, Qwen3, GPT-2).

``llama``, ``gpt2`` and ``moe_families`` hold one declarative table per family (config fields
and tensor names, used by both directions) on the interface in ``family``; ``families`` lists
them and picks one; ``weights`` the safetensors files, ``folder`` whole folders (tokenizer files
and the model card included), ``card`` the model card.
"""

from nextok.hf.families import FAMILIES, family_for_export
from nextok.hf.family import UnsupportedConfig
from nextok.hf.folder import (
    HFModel,
    build_model,
    export_hf,
    import_hf,
    is_hf_folder,
    read_hf_folder,
)


def hf_family(cfg) -> str:
    """The model_type export would write ``cfg`` as (an error if none computes it exactly)."""
    return family_for_export(cfg).model_type


__all__ = [
    "FAMILIES",
    "HFModel",
    "UnsupportedConfig",
    "build_model",
    "export_hf",
    "hf_family",
    "import_hf",
    "is_hf_folder",
    "read_hf_folder",
]
