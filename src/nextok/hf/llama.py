"""The Llama-like families (Llama 1/2/3.x, SmolLM, Mistral, Qwen2/2.5, Qwen3): config fields,
refusals (sliding windows, biases, activations) and tensor names."""

from __future__ import annotations

from dataclasses import dataclass

from nextok.hf import sliding
from nextok.hf.family import (
    REQUIRED,
    Family,
    Field,
    Row,
    check_generic,
    fields_in,
    fields_out,
    refuse,
)
from nextok.hf.rope_config import rope_in, rope_out
from nextok.model import ModelConfig


def _or_none(value: int | None) -> int | None:
    return value or None  # as transformers: a missing, null or 0 value means "derive it"


@dataclass(frozen=True)
class LlamaLike(Family):
    """Llama 1/2/3.x, SmolLM, Mistral, Qwen2/2.5, Qwen3: RoPE + RMSNorm + SwiGLU decoders.

    ``attn_bias``: "config" (``attention_bias`` biases q/k/v/o), "qkv" (always q/k/v only,
    Qwen2) or "none" (Mistral). ``mlp_bias``: whether ``mlp_bias`` exists. ``qk_norm``: per-head
    q/k RMSNorm (Qwen3). ``sliding``: which layers its sliding-window fields make slide
    (:mod:`nextok.hf.sliding`; "": the family has no window).
    """

    attn_bias: str = "config"
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding: str = ""
    norm_eps_default: float = 1e-6
    head_dim_default: int | None = None  # a missing head_dim (Qwen3: 128); None: d_model / n_head

    def why_not(self, cfg: ModelConfig) -> str | None:
        if (cfg.pos, cfg.norm, cfg.mlp) != ("rope", "rmsnorm", "swiglu"):
            return "needs pos=rope, norm=rmsnorm, mlp=swiglu"
        if cfg.qk_norm != self.qk_norm:
            return f"needs qk_norm={self.qk_norm}"
        if self.attn_bias == "config":  # q/k/v/o biases; a q/k/v-only one writes o_proj.bias=0
            if cfg.attn_out_bias and not cfg.qkv_bias:
                return "needs qkv_bias=true when attn_out_bias=true"
        else:
            want = {"qkv": (True, False), "none": (False, False)}[self.attn_bias]
            if (cfg.qkv_bias, cfg.attn_out_bias) != want:
                return f"needs (qkv_bias, attn_out_bias)={want}"
        if cfg.mlp_bias and not self.mlp_bias:
            return "needs mlp_bias=false"
        return sliding.why_not(cfg, self.sliding)

    def fields(self) -> tuple[Field, ...]:
        return (
            Field("vocab_size", "vocab_size"),
            Field("hidden_size", "d_model"),
            Field("intermediate_size", "ffn_hidden", export="ffn_dim"),
            Field("num_hidden_layers", "n_layer"),
            Field("num_attention_heads", "n_head"),
            Field("num_key_value_heads", "n_kv_head", None, _or_none),  # null: n_head (MHA)
            # missing: the family's default; null: d_model / n_head
            Field("head_dim", "head_dim", self.head_dim_default, _or_none),
            Field("max_position_embeddings", "block_size", REQUIRED),
            Field("rms_norm_eps", "norm_eps", self.norm_eps_default, float),
            Field("tie_word_embeddings", "tie_embeddings", False, bool),
        )

    def config_out(self, cfg: ModelConfig) -> dict:
        out = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            **fields_out(self.fields(), cfg),
            **rope_out(cfg),
            "hidden_act": "silu",
            "attention_dropout": 0.0,
        }
        if self.attn_bias == "config":
            out["attention_bias"] = cfg.qkv_bias
        if self.mlp_bias:
            out["mlp_bias"] = cfg.mlp_bias
        if self.sliding:
            out.update(sliding.window_out(cfg, self.sliding))
        return out

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        handled = {f.hf for f in self.fields()} | {
            "rope_theta",
            "rope_scaling",
            "rope_parameters",
            "hidden_act",
            "attention_dropout",
            "attention_bias",
            "mlp_bias",
            *sliding.KEYS,
            # nanotron leftovers in SmolLM configs that transformers ignores
            "is_llama_config",
            "rope_interleaved",
        }
        check_generic(c, where, handled)
        args = fields_in(self.fields(), c, where, block_size)
        if c.get("rope_interleaved"):
            raise refuse(
                where, "rope_interleaved", True, "the weights expect interleaved RoPE pairs"
            )
        if c.get("hidden_act", "silu") not in ("silu", "swish"):
            raise refuse(where, "hidden_act", c["hidden_act"], "the SwiGLU MLP uses silu")
        window, layers = (
            sliding.window_in(c, where, self.model_type, self.sliding, args["n_layer"])
            if self.sliding
            else (None, None)
        )
        if dropout is None and float(c.get("attention_dropout") or 0.0) != 0.0:
            raise refuse(
                where,
                "attention_dropout",
                c["attention_dropout"],
                "nextok's dropout also drops residuals; set it to 0 and use model.dropout "
                "(or override model.dropout)",
            )
        attn_bias = bool(c.get("attention_bias", False))
        if attn_bias and self.attn_bias != "config":
            raise refuse(where, "attention_bias", True, f"{self.model_type} has no such option")
        if c.get("mlp_bias") and not self.mlp_bias:
            raise refuse(where, "mlp_bias", True, f"{self.model_type} has no such option")
        theta, scaling = rope_in(c, where)
        qkv = {"config": attn_bias, "qkv": True, "none": False}[self.attn_bias]
        return ModelConfig(
            **args,
            norm="rmsnorm",
            pos="rope",
            rope_theta=theta,
            rope_scaling=scaling,
            mlp="swiglu",
            bias=False,
            qkv_bias=qkv,
            attn_out_bias=attn_bias if self.attn_bias == "config" else False,
            mlp_bias=bool(c.get("mlp_bias", False)),
            qk_norm=self.qk_norm,
            sliding_window=window,
            sliding_layers=layers,
            dropout=float(dropout or 0.0),
        )

    def rows(self, cfg: ModelConfig) -> list[Row]:
        hd, f = cfg.head_dim, cfg.ffn_dim
        qkv = (cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_kv_head * hd)
        rows: list[Row] = [
            ("tok_emb.weight", ("model.embed_tokens.weight",), "same", ()),
            ("norm.weight", ("model.norm.weight",), "same", ()),
        ]
        if not cfg.tie_embeddings:
            rows.append(("lm_head.weight", ("lm_head.weight",), "same", ()))
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            att, mlp = h + "self_attn.", h + "mlp."
            rows += [
                (p + "attn_norm.weight", (h + "input_layernorm.weight",), "same", ()),
                (
                    p + "attn.qkv.weight",
                    tuple(att + f"{n}_proj.weight" for n in "qkv"),
                    "split",
                    qkv,
                ),
                (p + "attn.proj.weight", (att + "o_proj.weight",), "same", ()),
                (p + "mlp_norm.weight", (h + "post_attention_layernorm.weight",), "same", ()),
                (
                    p + "mlp.fc.weight",
                    (mlp + "gate_proj.weight", mlp + "up_proj.weight"),
                    "split",
                    (f, f),
                ),
                (p + "mlp.proj.weight", (mlp + "down_proj.weight",), "same", ()),
            ]
            if cfg.qkv_bias:
                rows.append(
                    (
                        p + "attn.qkv.bias",
                        tuple(att + f"{n}_proj.bias" for n in "qkv"),
                        "split",
                        qkv,
                    )
                )
            if cfg.attn_out_bias:
                rows.append((p + "attn.proj.bias", (att + "o_proj.bias",), "same", ()))
            elif cfg.qkv_bias and self.attn_bias == "config":  # attention_bias covers o_proj too
                rows.append(("", (att + "o_proj.bias",), "zeros_out", (cfg.d_model,)))
            if cfg.qk_norm:
                rows += [
                    (p + "attn.q_norm.weight", (att + "q_norm.weight",), "same", ()),
                    (p + "attn.k_norm.weight", (att + "k_norm.weight",), "same", ()),
                ]
            if cfg.mlp_bias:
                rows += [
                    (
                        p + "mlp.fc.bias",
                        (mlp + "gate_proj.bias", mlp + "up_proj.bias"),
                        "split",
                        (f, f),
                    ),
                    (p + "mlp.proj.bias", (mlp + "down_proj.bias",), "same", ()),
                ]
        return rows

    def ignorable(self, name: str) -> bool:
        return name.endswith("rotary_emb.inv_freq")  # old checkpoints stored the RoPE table
