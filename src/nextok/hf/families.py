"""The Hugging Face families nextok reads and writes, and how one is picked for export/import.

Each family is a table of its ``config.json`` fields and tensor names (:mod:`nextok.hf.llama`,
:mod:`nextok.hf.gpt2`, :mod:`nextok.hf.moe_families`, on :class:`~nextok.hf.family.Family`);
export and import both read these tables, so every field and tensor is described once.
"""

from __future__ import annotations

from tokenizers import Tokenizer

from nextok.hf.family import Family, UnsupportedConfig, refuse
from nextok.hf.gpt2 import GPT2
from nextok.hf.llama import LlamaLike
from nextok.hf.moe_families import MOE_FAMILIES
from nextok.hf.tokenizer_rebuild import rebuilt_differs
from nextok.model import ModelConfig

QWEN3_HEAD_DIM = 128  # Qwen3Config's default (checked by tests/hf/test_refusals.py)

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        LlamaLike("llama", "LlamaForCausalLM", "model.", attn_bias="config", mlp_bias=True),
        LlamaLike("mistral", "MistralForCausalLM", "model.", attn_bias="none", sliding="all"),
        LlamaLike("qwen2", "Qwen2ForCausalLM", "model.", attn_bias="qkv", sliding="qwen"),
        LlamaLike(
            "qwen3",
            "Qwen3ForCausalLM",
            "model.",
            qk_norm=True,
            sliding="qwen",
            head_dim_default=QWEN3_HEAD_DIM,
        ),
        GPT2("gpt2", "GPT2LMHeadModel", "transformer."),
        *MOE_FAMILIES.values(),
    )
}

# Export picks the first family that can express a config (unless one is asked for).
EXPORT_ORDER = ("llama", "qwen2", "qwen3", "gpt2", "mistral", "qwen3_moe", "mixtral")


def _switch_refusal(cfg: ModelConfig) -> str | None:
    """The first architecture switch that is on and that no family here expresses, as one line."""
    on = {
        "logit_softcap": cfg.logit_softcap,
        "value_residual": cfg.value_residual,
        "unet_skips": cfg.unet_skips,
    }
    for key, value in on.items():
        if value not in (None, False):
            return (
                f"model.{key}={value} has no Hugging Face equivalent in the families nextok "
                f"writes ({', '.join(EXPORT_ORDER)}); export a model trained without it"
            )
    return None


def _why_not(name: str, cfg: ModelConfig, tokenizer: Tokenizer | None) -> str | None:
    """Why family ``name`` cannot hold ``cfg`` (and ``tokenizer``, as transformers loads it)."""
    why = FAMILIES[name].why_not(cfg)
    if why is None and tokenizer is not None:
        why = rebuilt_differs(name, tokenizer)
    return why


def family_for_export(
    cfg: ModelConfig,
    family: str | None = None,
    prefer: str | None = None,
    tokenizer: Tokenizer | None = None,
) -> Family:
    """The family to write ``cfg`` (and ``tokenizer``) as: ``family`` (the user's choice: used
    or refused), else ``prefer`` (a hint, e.g. the imported family) if it fits, else the first
    that does."""
    refusal = _switch_refusal(cfg)
    if refusal is not None:
        raise ValueError(refusal)
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"family={family!r} is not one of {sorted(FAMILIES)}")
        why = _why_not(family, cfg, tokenizer)
        if why is not None:
            raise ValueError(f"family={family!r} cannot express this model: it {why}")
        return FAMILIES[family]
    if prefer is not None and prefer in FAMILIES and _why_not(prefer, cfg, tokenizer) is None:
        return FAMILIES[prefer]
    reasons = {}
    for name in EXPORT_ORDER:
        why = _why_not(name, cfg, tokenizer)
        if why is None:
            return FAMILIES[name]
        reasons[name] = why
    raise ValueError(
        "this model has no exact Hugging Face equivalent: "
        + "; ".join(f"{k} {v}" for k, v in reasons.items())
        + f" (got pos={cfg.pos} norm={cfg.norm} mlp={cfg.mlp} bias={cfg.bias} "
        f"qkv_bias={cfg.qkv_bias} qk_norm={cfg.qk_norm})"
    )


def family_for_import(c: dict, where: str) -> Family:
    kind = c.get("model_type")
    if kind not in FAMILIES:
        raise UnsupportedConfig(
            f"{where}: model_type {kind!r} is not supported (supported: {sorted(FAMILIES)})"
        )
    fam = FAMILIES[kind]
    base = fam.architecture.replace("ForCausalLM", "Model").replace("LMHeadModel", "Model")
    for arch in c.get("architectures") or []:
        if arch not in (fam.architecture, base):
            raise refuse(where, "architectures", arch, f"expected {fam.architecture}")
    return fam
