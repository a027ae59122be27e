"""The model card (``README.md``) of an exported folder: real figures only.

Facts the checkpoint does not hold are left out rather than guessed.
"""

from __future__ import annotations

import json
from typing import Any

from nextok.model import ModelConfig


def _arch(cfg: ModelConfig) -> str:
    parts = [
        f"{cfg.n_layer} layers",
        f"d_model {cfg.d_model}",
        f"{cfg.n_head} query / {cfg.n_kv_head} key-value heads of {cfg.head_dim}",
        f"MLP {cfg.mlp} ({cfg.ffn_dim})",
        cfg.norm,
        f"RoPE θ={cfg.rope_theta:g}" if cfg.pos == "rope" else "learned positions",
    ]
    if cfg.rope_scaling:
        parts.append(f"RoPE scaling {cfg.rope_scaling['type']} x{cfg.rope_scaling['factor']}")
    if cfg.qk_norm:
        parts.append("q/k RMSNorm")
    if cfg.qkv_bias or cfg.attn_out_bias or cfg.mlp_bias:
        parts.append("biases")
    parts.append("tied embeddings" if cfg.tie_embeddings else "untied LM head")
    parts.append(f"vocabulary {cfg.vocab_size}, context {cfg.block_size}")
    return ", ".join(parts)


def model_card(
    cfg: ModelConfig,
    model_type: str,
    architecture: str,
    n_params: int,
    dtype: str,
    info: dict[str, Any],
) -> str:
    """Markdown with Hub metadata; ``info``: tokens_seen, val_loss, val_step, train_config, source."""
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [nextok]",
        "---",
        "",
        "# Model card",
        "",
        "Trained with [nextok](https://github.com/) (a Lightning + Hydra trainer for decoder-only "
        "transformers) and exported to the Hugging Face format.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{architecture}` (`model_type: {model_type}`): {_arch(cfg)} |",
        f"| parameters | {n_params:,} ({n_params / 1e6:.2f}M) |",
        f"| weights dtype | {dtype} |",
    ]
    if info.get("source"):
        lines.append(f"| initialised from | `{info['source']}` |")
    if info.get("tokens_seen") is not None:
        lines.append(f"| tokens trained | {int(info['tokens_seen']):,} |")
    if info.get("val_loss") is not None:
        # Say what the figure covers: periodic validations may read a fixed subset of the split.
        step = f" at step {info['val_step']}" if info.get("val_step") is not None else ""
        scope = info.get("val_scope") or "the validation data (coverage not recorded)"
        tokens = f", {int(info['val_tokens']):,} tokens" if info.get("val_tokens") else ""
        lines.append(
            f"| validation loss (latest in the checkpoint) | {float(info['val_loss']):.4f} "
            f"nats/token{step}, on {scope}{tokens} |"
        )
    lines += [
        "",
        "## How to load it",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("PATH_OR_HUB_ID")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")',
        'ids = tokenizer("def ", return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=32)[0]))",
        "```",
        "",
        "or with nextok: `nextok-generate ckpt=PATH prompt='\"def \"'`.",
    ]
    if info.get("train_config"):
        lines += [
            "",
            "## Training configuration",
            "",
            "```json",
            json.dumps(info["train_config"], indent=2, sort_keys=True, default=str),
            "```",
        ]
    return "\n".join(lines) + "\n"
