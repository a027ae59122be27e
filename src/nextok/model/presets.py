"""Named model presets, as data: the constructor arguments of each
:class:`~nextok.model.config.ModelConfig` (which builds them: ``ModelConfig.from_preset``,
``nextok.model.PRESETS``). Plain data, importing nothing, so the config class can read it.

This table is the one home of every preset value: Hydra's ``model=<name>`` options are built
from it (``nextok.run.model_presets``), no file spells them again.
"""

from __future__ import annotations

from typing import Any

PRESET_ARGS: dict[str, dict[str, Any]] = {
    # A few seconds per step on a laptop CPU: the default run's model.
    "tiny": dict(
        vocab_size=4096,
        block_size=256,
        n_layer=4,
        n_head=4,
        n_kv_head=2,
        d_model=128,
    ),
    # 'tiny' with Mixture-of-Experts MLPs: 8 experts of width 192, top-2 -> the same active
    # parameters per token as 'tiny' (whose SwiGLU is 384 wide), 4x its MLP parameters in total.
    "tiny-moe": dict(
        vocab_size=4096,
        block_size=256,
        n_layer=4,
        n_head=4,
        n_kv_head=2,
        d_model=128,
        mlp="moe",
        n_experts=8,
        moe_top_k=2,
        moe_ffn_hidden=192,
    ),
    # GPT-2 124M: learned positions, LayerNorm, GELU, biases, tied embeddings.
    # Vocab padded from 50257 to a multiple of 64 for faster matmuls (as nanoGPT does).
    "gpt2-small": dict(
        vocab_size=50304,
        block_size=1024,
        n_layer=12,
        n_head=12,
        n_kv_head=12,
        d_model=768,
        norm="layernorm",
        pos="learned",
        mlp="gelu",
        bias=True,
        tie_embeddings=True,
        ffn_multiplier=4.0,
    ),
    # A small Llama-style model (~125M with a 32k vocab): RoPE, RMSNorm, SwiGLU, GQA, untied.
    "llama-small": dict(
        vocab_size=32000,
        block_size=2048,
        n_layer=12,
        n_head=12,
        n_kv_head=4,
        d_model=768,
        norm="rmsnorm",
        pos="rope",
        mlp="swiglu",
        ffn_multiple_of=256,
        tie_embeddings=False,
    ),
    # ~1.0B total / ~0.2B active Mixture-of-Experts (OLMoE / Qwen3-MoE style fine-grained experts,
    # qk-norm, untied head: exports as Qwen3-MoE): for GPU users.
    "moe-1b": dict(
        vocab_size=32768,
        block_size=2048,
        n_layer=18,
        n_head=16,
        n_kv_head=4,
        d_model=1024,
        norm_eps=1e-6,
        rope_theta=1e6,
        tie_embeddings=False,
        qk_norm=True,
        mlp="moe",
        n_experts=64,
        moe_top_k=8,
        moe_ffn_hidden=256,
    ),
    # Llama-3.2-1B shape (~1.24B): for GPU users.
    "llama-1b": dict(
        vocab_size=128256,
        block_size=2048,
        n_layer=16,
        n_head=32,
        n_kv_head=8,
        d_model=2048,
        ffn_hidden=8192,
        norm="rmsnorm",
        pos="rope",
        rope_theta=500000.0,
        mlp="swiglu",
        tie_embeddings=True,
    ),
}
