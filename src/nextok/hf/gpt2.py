"""The GPT-2 family: learned positions, LayerNorm, GELU, biases, Conv1D (in, out) weights."""

from __future__ import annotations

from dataclasses import dataclass

from nextok.hf.family import (
    Family,
    Field,
    Row,
    check_generic,
    fields_in,
    fields_out,
    one_dropout,
    refuse,
)
from nextok.model import ModelConfig

# activation_function -> our mlp; export writes the first name of each (gelu_new, gelu)
_GELU = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "gelu": "gelu_exact"}
_DROPOUTS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")  # one model.dropout for all three
_FIXED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}  # what we compute


@dataclass(frozen=True)
class GPT2(Family):
    """GPT-2: learned positions, LayerNorm, GELU MLP, biases everywhere, Conv1D (in, out) weights."""

    def why_not(self, cfg: ModelConfig) -> str | None:
        if (cfg.pos, cfg.norm) != ("learned", "layernorm") or cfg.mlp not in ("gelu", "gelu_exact"):
            return "needs pos=learned, norm=layernorm, mlp=gelu|gelu_exact"
        if not (cfg.bias and cfg.qkv_bias and cfg.attn_out_bias and cfg.mlp_bias):
            return "needs bias=true everywhere"
        if cfg.qk_norm or cfg.n_kv_head != cfg.n_head or cfg.head_dim * cfg.n_head != cfg.d_model:
            return "needs qk_norm=false, n_kv_head=n_head and head_dim=d_model/n_head"
        return None

    def fields(self) -> tuple[Field, ...]:
        return (
            Field("vocab_size", "vocab_size"),
            Field("n_positions", "block_size"),
            Field("n_embd", "d_model"),
            Field("n_layer", "n_layer"),
            Field("n_head", "n_head"),
            Field("n_inner", "ffn_hidden", None, export="ffn_dim"),  # null: 4 * n_embd
            Field("layer_norm_epsilon", "norm_eps", 1e-5, float),
            Field("tie_word_embeddings", "tie_embeddings", True, bool),
        )

    def config_out(self, cfg: ModelConfig) -> dict:
        return {
            "architectures": [self.architecture],
            "model_type": "gpt2",
            **fields_out(self.fields(), cfg),
            "activation_function": next(k for k, v in _GELU.items() if v == cfg.mlp),
            **dict.fromkeys(_DROPOUTS, cfg.dropout),
            **_FIXED,
        }

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        handled = (
            {f.hf for f in self.fields()}
            | set(_DROPOUTS)
            | set(_FIXED)
            | {
                "n_ctx",
                "activation_function",
                "reorder_and_upcast_attn",
                "summary_type",
                "summary_use_proj",
                "summary_activation",
                "summary_proj_to_labels",
                "summary_first_dropout",
            }
        )  # summary_*: GPT2DoubleHeadsModel's classifier head, absent from a causal LM
        check_generic(c, where, handled)
        args = fields_in(self.fields(), c, where, block_size)
        act = c.get("activation_function", "gelu_new")
        if act not in _GELU:
            raise refuse(where, "activation_function", act, f"nextok has {sorted(_GELU)}")
        for key, ok in _FIXED.items():
            if c.get(key, ok) != ok:
                raise refuse(where, key, c[key], f"nextok computes {key}={ok}")
        args["ffn_hidden"] = args["ffn_hidden"] or 4 * args["d_model"]
        return ModelConfig(
            **args,
            norm="layernorm",
            pos="learned",
            mlp=_GELU[act],
            bias=True,
            dropout=float(dropout) if dropout is not None else one_dropout(c, where, _DROPOUTS),
        )

    def rows(self, cfg: ModelConfig) -> list[Row]:
        rows: list[Row] = [
            ("tok_emb.weight", ("transformer.wte.weight",), "same", ()),
            ("pos_emb.weight", ("transformer.wpe.weight",), "same", ()),
            ("norm.weight", ("transformer.ln_f.weight",), "same", ()),
            ("norm.bias", ("transformer.ln_f.bias",), "same", ()),
        ]
        if not cfg.tie_embeddings:
            rows.append(("lm_head.weight", ("lm_head.weight",), "same", ()))
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
                rows += [
                    (p + f"{ours}.{t}", (h + f"{theirs}.{t}",), "same", ())
                    for t in ("weight", "bias")
                ]
            for ours, theirs in (
                ("attn.qkv", "attn.c_attn"),
                ("attn.proj", "attn.c_proj"),
                ("mlp.fc", "mlp.c_fc"),
                ("mlp.proj", "mlp.c_proj"),
            ):
                rows += [
                    (p + ours + ".weight", (h + theirs + ".weight",), "t", ()),
                    (p + ours + ".bias", (h + theirs + ".bias",), "same", ()),
                ]
        return rows

    def ignorable(self, name: str) -> bool:
        # the causal-mask buffers older GPT-2 files carry (checked to be causal by the loader)
        return name.endswith((".attn.bias", ".attn.masked_bias")) and ".c_attn" not in name
