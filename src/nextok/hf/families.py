"""One table per Hugging Face family: how its ``config.json`` and tensor names map to ours.

Export and import both read these tables, so every field and tensor is described once. A family
says which of our configs it can express (``why_not``), writes its ``config.json``
(``config_out``), reads one back (``config_in``: every field that changes the computation is
honoured or refused with one line naming it) and lists the tensors (``rows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nextok.model import ModelConfig
from nextok.model.config import ROPE_SCALINGS

# (our key, HF keys, how, split sizes): "same" copies, "split" cuts our fused tensor into the HF
# tensors along dim 0 (qkv -> q/k/v, SwiGLU fc -> gate/up), "t" transposes (GPT-2's Conv1D).
# "experts" stacks per-expert HF tensors (each group of len(sizes) cut by sizes) into a 3-D bank;
# "zeros" is a buffer of ours with no HF tensor (it must be zero to export).
Row = tuple[str, tuple[str, ...], str, tuple[int, ...]]

# config.json keys that do not change what the weights compute (bookkeeping, generation
# defaults, inference caches, initialisation): read and ignored.
GENERIC_KEYS = frozenset(
    """_name_or_path architectures model_type transformers_version dtype torch_dtype use_cache
    initializer_range bos_token_id eos_token_id pad_token_id sep_token_id unk_token_id
    decoder_start_token_id output_attentions output_hidden_states return_dict torchscript
    use_bfloat16 id2label label2id problem_type tokenizer_class prefix task_specific_params
    finetuning_task pruned_heads tf_legacy_loss chunk_size_feed_forward is_decoder
    is_encoder_decoder add_cross_attention cross_attention_hidden_size max_length min_length
    do_sample early_stopping num_beams num_beam_groups diversity_penalty temperature top_k top_p
    typical_p repetition_penalty length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size
    bad_words_ids num_return_sequences output_scores return_dict_in_generate forced_bos_token_id
    forced_eos_token_id remove_invalid_values exponential_decay_length_penalty suppress_tokens
    begin_suppress_tokens pretraining_tp""".split()
)
# Must hold these values (anything else changes the computation and is refused).
GENERIC_REQUIRED = {"add_cross_attention": False, "is_encoder_decoder": False}


class UnsupportedConfig(ValueError):
    """A config.json field whose value nextok cannot compute exactly."""


def _refuse(where: str, key: str, value: Any, why: str) -> UnsupportedConfig:
    return UnsupportedConfig(f"{where}: {key}={value!r} is not supported: {why}")


def _require(c: dict, where: str, *keys: str) -> list:
    missing = [k for k in keys if c.get(k) is None]
    if missing:
        raise UnsupportedConfig(
            f"{where} lacks {missing} (required for model_type {c.get('model_type')})"
        )
    return [c[k] for k in keys]


def _check_generic(c: dict, where: str, handled: set[str]) -> None:
    for key, value in GENERIC_REQUIRED.items():
        if c.get(key, value) != value:
            raise _refuse(where, key, c[key], "only decoder-only causal LMs are supported")
    unknown = sorted(set(c) - GENERIC_KEYS - handled)
    if unknown:
        raise UnsupportedConfig(
            f"{where}: unknown field(s) {unknown} for model_type {c.get('model_type')!r}; "
            "nextok refuses fields it cannot prove harmless"
        )


# ---------------------------------------------------------------------- RoPE
_SCALING_KEYS = {"default": (), **ROPE_SCALINGS}  # the model's table, plus "no scaling"


def rope_in(c: dict, where: str) -> tuple[float, dict | None]:
    """(theta, our rope_scaling) from ``rope_parameters`` (transformers 5) or the legacy
    ``rope_theta`` + ``rope_scaling`` fields."""
    for key in ("rope_scaling", "rope_parameters"):
        if c.get(key) and not isinstance(c[key], dict):
            raise _refuse(where, key, c[key], "expected one dict of RoPE parameters")
    if c.get("rope_scaling") and c.get("rope_parameters"):
        _same_rope(c, where)
    # transformers reads ``rope_scaling or rope_parameters``
    field = "rope_scaling" if c.get("rope_scaling") else "rope_parameters"
    params = c.get(field) or {}
    params = dict(params)
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    theta = params.pop("rope_theta", None)
    top = c.get("rope_theta")
    if theta is not None and top is not None and float(theta) != float(top):
        raise _refuse(where, "rope_theta", top, f"it contradicts {field}.rope_theta={theta}")
    theta = float(theta if theta is not None else top if top is not None else 10000.0)
    if kind not in _SCALING_KEYS:
        raise _refuse(
            where, f"{field}.rope_type", kind, f"nextok implements {sorted(_SCALING_KEYS)}"
        )
    for key in ("partial_rotary_factor",):
        for src in (params, c):
            if src.get(key, 1.0) != 1.0:
                raise _refuse(where, key, src[key], "nextok rotates the whole head")
        params.pop(key, None)
    if kind == "llama3" and "original_max_position_embeddings" not in params:
        params["original_max_position_embeddings"] = c.get("max_position_embeddings")
    extra = sorted(set(params) - set(_SCALING_KEYS[kind]))
    if extra:
        raise _refuse(
            where, f"{field}.{extra[0]}", params[extra[0]], f"not used by rope_type {kind}"
        )
    if kind == "default":
        return theta, None
    missing = [k for k in _SCALING_KEYS[kind] if params.get(k) is None]
    if missing:
        raise UnsupportedConfig(f"{where}: {field} of rope_type {kind} lacks {missing}")
    return theta, {"type": kind, **{k: params[k] for k in _SCALING_KEYS[kind]}}


def _rope_kind(d: dict) -> tuple[str, dict]:
    d = dict(d)
    kind = d.pop("rope_type", None) or d.pop("type", None) or "default"
    d.pop("type", None)
    return kind, d


def _same_rope(c: dict, where: str) -> None:
    """Both ``rope_scaling`` and ``rope_parameters`` are set: transformers uses ``rope_scaling``
    (theta from it, else ``rope_theta``, else 10000); refuse unless both say the same."""
    ks, ds = _rope_kind(c["rope_scaling"])
    kp, dp = _rope_kind(c["rope_parameters"])
    theta_s = float(ds.pop("rope_theta", c.get("rope_theta", 10000.0)))
    theta_p = dp.pop("rope_theta", None)
    if ks != kp or ds != dp or (theta_p is not None and float(theta_p) != theta_s):
        raise UnsupportedConfig(
            f"{where}: rope_scaling={c['rope_scaling']!r} and rope_parameters="
            f"{c['rope_parameters']!r} disagree (transformers reads rope_scaling, with theta "
            f"{theta_s}); keep only the one the weights were trained with"
        )


def rope_out(cfg: ModelConfig) -> dict:
    """Legacy ``rope_theta`` + ``rope_scaling``: read by transformers 4.x and 5.x alike."""
    scaling = None
    if cfg.rope_scaling is not None:
        rs = dict(cfg.rope_scaling)
        scaling = {"rope_type": rs.pop("type"), **rs}
    return {"rope_theta": cfg.rope_theta, "rope_scaling": scaling}


# ---------------------------------------------------------------------- families
# transformers' defaults for a missing key (MistralConfig / Qwen2Config / Qwen3Config, checked
# against the installed transformers by tests/hf/test_review_fixes.py)
SLIDING_DEFAULTS = {"mistral": 4096, "qwen2": 4096, "qwen3": 4096}
MAX_WINDOW_LAYERS_DEFAULT = 28


@dataclass(frozen=True)
class Family:
    model_type: str
    architecture: str
    prefix: str  # of the decoder's tensors, absent when saved from the base model class

    def why_not(self, cfg: ModelConfig) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def config_out(self, cfg: ModelConfig) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        """``block_size`` may shorten the context; ``dropout`` (the user's ``model.dropout``, or
        0 for inference) replaces the file's training-only dropout fields."""
        raise NotImplementedError  # pragma: no cover - abstract

    def rows(self, cfg: ModelConfig) -> list[Row]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ignorable(self, name: str) -> bool:
        """Stored buffers that carry no learned value (checked by the loader)."""
        return False


def _block_size(c: dict, key: str, where: str, block_size: int | None) -> int:
    (limit,) = _require(c, where, key)
    if block_size is None:
        return int(limit)
    if block_size > limit:
        raise UnsupportedConfig(
            f"{where}: model.block_size={block_size} exceeds {key}={limit} (the longest context the "
            "weights were made for)"
        )
    return int(block_size)


def _dropout(c: dict, where: str, keys: tuple[str, ...]) -> float:
    values = {float(c.get(k) or 0.0) for k in keys}
    if len(values) > 1:
        raise UnsupportedConfig(
            f"{where}: {', '.join(f'{k}={c.get(k)}' for k in keys)} differ; nextok's model.dropout "
            "applies one rate to all of them (set the same value, or override model.dropout)"
        )
    return values.pop()


@dataclass(frozen=True)
class LlamaLike(Family):
    """Llama 1/2/3.x, SmolLM, Mistral, Qwen2/2.5, Qwen3: RoPE + RMSNorm + SwiGLU decoders.

    ``attn_bias``: "config" (``attention_bias`` biases q/k/v/o), "qkv" (always q/k/v only,
    Qwen2) or "none" (Mistral). ``mlp_bias``: whether ``mlp_bias`` exists. ``qk_norm``: per-head
    q/k RMSNorm (Qwen3). ``sliding``: the family has sliding-window fields.
    """

    attn_bias: str = "config"
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding: bool = False
    norm_eps_default: float = 1e-6

    def why_not(self, cfg: ModelConfig) -> str | None:
        if (cfg.pos, cfg.norm, cfg.mlp) != ("rope", "rmsnorm", "swiglu"):
            return "needs pos=rope, norm=rmsnorm, mlp=swiglu"
        if cfg.qk_norm != self.qk_norm:
            return f"needs qk_norm={self.qk_norm}"
        want = {
            "config": (cfg.qkv_bias, cfg.qkv_bias),
            "qkv": (True, False),
            "none": (False, False),
        }[self.attn_bias]
        if (cfg.qkv_bias, cfg.attn_out_bias) != want:
            return f"needs (qkv_bias, attn_out_bias)={want}"
        if cfg.mlp_bias and not self.mlp_bias:
            return "needs mlp_bias=false"
        return None

    def config_out(self, cfg: ModelConfig) -> dict:
        out = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "intermediate_size": cfg.ffn_dim,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head,
            "head_dim": cfg.head_dim,
            "max_position_embeddings": cfg.block_size,
            "rms_norm_eps": cfg.norm_eps,
            **rope_out(cfg),
            "hidden_act": "silu",
            "tie_word_embeddings": cfg.tie_embeddings,
            "attention_dropout": 0.0,
        }
        if self.attn_bias == "config":
            out["attention_bias"] = cfg.qkv_bias
        if self.mlp_bias:
            out["mlp_bias"] = cfg.mlp_bias
        if self.sliding:
            out["sliding_window"] = None
            if self.model_type != "mistral":
                out["use_sliding_window"] = False
        return out

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        handled = {
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
            "rms_norm_eps",
            "rope_theta",
            "rope_scaling",
            "rope_parameters",
            "hidden_act",
            "tie_word_embeddings",
            "attention_dropout",
            "attention_bias",
            "mlp_bias",
            "sliding_window",
            "use_sliding_window",
            "max_window_layers",
            "layer_types",
            # nanotron leftovers in SmolLM configs that transformers ignores
            "is_llama_config",
            "rope_interleaved",
        }
        _check_generic(c, where, handled)
        vocab, d, ffn, n_layer, n_head = _require(
            c,
            where,
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        )
        if c.get("rope_interleaved"):
            raise _refuse(
                where, "rope_interleaved", True, "the weights expect interleaved RoPE pairs"
            )
        if c.get("hidden_act", "silu") not in ("silu", "swish"):
            raise _refuse(where, "hidden_act", c["hidden_act"], "the SwiGLU MLP uses silu")
        block = _block_size(c, "max_position_embeddings", where, block_size)
        self._check_window(c, where, block, n_layer)
        if dropout is None and float(c.get("attention_dropout") or 0.0) != 0.0:
            raise _refuse(
                where,
                "attention_dropout",
                c["attention_dropout"],
                "nextok's dropout also drops residuals; set it to 0 and use model.dropout "
                "(or override model.dropout)",
            )
        attn_bias = bool(c.get("attention_bias", False))
        if attn_bias and self.attn_bias != "config":
            raise _refuse(where, "attention_bias", True, f"{self.model_type} has no such option")
        if c.get("mlp_bias") and not self.mlp_bias:
            raise _refuse(where, "mlp_bias", True, f"{self.model_type} has no such option")
        theta, scaling = rope_in(c, where)
        qkv = {"config": attn_bias, "qkv": True, "none": False}[self.attn_bias]
        return ModelConfig(
            vocab_size=vocab,
            block_size=block,
            n_layer=n_layer,
            n_head=n_head,
            n_kv_head=c.get("num_key_value_heads") or n_head,
            d_model=d,
            head_dim=c.get("head_dim") or None,
            ffn_hidden=ffn,
            norm="rmsnorm",
            norm_eps=float(c.get("rms_norm_eps", self.norm_eps_default)),
            pos="rope",
            rope_theta=theta,
            rope_scaling=scaling,
            mlp="swiglu",
            bias=False,
            qkv_bias=qkv,
            attn_out_bias=attn_bias if self.attn_bias == "config" else False,
            mlp_bias=bool(c.get("mlp_bias", False)),
            qk_norm=self.qk_norm,
            tie_embeddings=bool(c.get("tie_word_embeddings", False)),
            dropout=float(dropout or 0.0),
        )

    def _check_window(self, c: dict, where: str, block: int, n_layer: int) -> None:
        """Which layers slide, computed as transformers does (a missing key takes the config
        class's default); refused when a sliding layer's window is shorter than the context."""
        if not self.sliding:
            return
        layer_types = c.get("layer_types")
        if self.model_type == "mistral":  # one window for every layer; layer_types not read
            window = c.get("sliding_window", SLIDING_DEFAULTS["mistral"])
            sliding = window is not None
        else:
            use = bool(c.get("use_sliding_window", False))
            window = c.get("sliding_window", SLIDING_DEFAULTS[self.model_type]) if use else None
            first = c.get("max_window_layers", MAX_WINDOW_LAYERS_DEFAULT)
            if layer_types is None:
                layer_types = [
                    "sliding_attention" if window is not None and i >= first else "full_attention"
                    for i in range(n_layer)
                ]
            bad = [t for t in layer_types if t not in ("full_attention", "sliding_attention")]
            if bad:
                raise _refuse(where, "layer_types", bad[0], "nextok has full causal attention only")
            sliding = "sliding_attention" in layer_types
            if sliding and window is None:
                raise _refuse(
                    where,
                    "layer_types",
                    "sliding_attention",
                    "use_sliding_window is false, so the window those layers use is undefined",
                )
        if sliding and window < block:
            src = "sliding_window" if "sliding_window" in c else "sliding_window (default)"
            raise _refuse(
                where,
                src,
                window,
                f"it is shorter than the context ({block}); nextok has no sliding-window attention. "
                f"With model.block_size <= {window} the computation is identical "
                f"(init_from: model.block_size={window}; nextok-generate/nextok-eval: "
                f"block_size={window})",
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


_GELU = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "gelu": "gelu_exact"}


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

    def config_out(self, cfg: ModelConfig) -> dict:
        return {
            "architectures": [self.architecture],
            "model_type": "gpt2",
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size,
            "n_embd": cfg.d_model,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.ffn_dim,
            "activation_function": "gelu_new" if cfg.mlp == "gelu" else "gelu",
            "layer_norm_epsilon": cfg.norm_eps,
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "tie_word_embeddings": cfg.tie_embeddings,
        }

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        handled = {
            "vocab_size",
            "n_positions",
            "n_ctx",
            "n_embd",
            "n_layer",
            "n_head",
            "n_inner",
            "activation_function",
            "layer_norm_epsilon",
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "scale_attn_weights",
            "scale_attn_by_inverse_layer_idx",
            "reorder_and_upcast_attn",
            "tie_word_embeddings",
            "summary_type",
            "summary_use_proj",
            "summary_activation",
            "summary_proj_to_labels",
            "summary_first_dropout",
        }  # summary_*: GPT2DoubleHeadsModel's classifier head, absent from a causal LM
        _check_generic(c, where, handled)
        vocab, d, n_layer, n_head = _require(c, where, "vocab_size", "n_embd", "n_layer", "n_head")
        act = c.get("activation_function", "gelu_new")
        if act not in _GELU:
            raise _refuse(where, "activation_function", act, f"nextok has {sorted(_GELU)}")
        for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
            if c.get(key, ok) != ok:
                raise _refuse(where, key, c[key], f"nextok computes {key}={ok}")
        return ModelConfig(
            vocab_size=vocab,
            block_size=_block_size(c, "n_positions", where, block_size),
            n_layer=n_layer,
            n_head=n_head,
            d_model=d,
            ffn_hidden=c.get("n_inner") or 4 * d,
            norm="layernorm",
            norm_eps=float(c.get("layer_norm_epsilon", 1e-5)),
            pos="learned",
            mlp=_GELU[act],
            bias=True,
            dropout=float(dropout)
            if dropout is not None
            else _dropout(c, where, ("resid_pdrop", "embd_pdrop", "attn_pdrop")),
            tie_embeddings=bool(c.get("tie_word_embeddings", True)),
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


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        LlamaLike("llama", "LlamaForCausalLM", "model.", attn_bias="config", mlp_bias=True),
        LlamaLike("mistral", "MistralForCausalLM", "model.", attn_bias="none", sliding=True),
        LlamaLike("qwen2", "Qwen2ForCausalLM", "model.", attn_bias="qkv", sliding=True),
        LlamaLike("qwen3", "Qwen3ForCausalLM", "model.", qk_norm=True, sliding=True),
        GPT2("gpt2", "GPT2LMHeadModel", "transformer."),
    )
}


def _register_moe_families() -> None:
    from nextok.hf.moe_families import MOE_FAMILIES  # built on LlamaLike, defined above

    FAMILIES.update(MOE_FAMILIES)


_register_moe_families()
# Export picks the first family that can express a config (unless one is asked for).
EXPORT_ORDER = ("llama", "qwen2", "qwen3", "gpt2", "mistral", "qwen3_moe", "mixtral")


def family_for_export(
    cfg: ModelConfig, family: str | None = None, prefer: str | None = None
) -> Family:
    """The family to write ``cfg`` as: ``family`` (the user's choice: used or refused),
    else ``prefer`` (a hint, e.g. the imported family) if it fits, else the first that does."""
    if family is not None:
        if family not in FAMILIES:
            raise ValueError(f"family={family!r} is not one of {sorted(FAMILIES)}")
        why = FAMILIES[family].why_not(cfg)
        if why is not None:
            raise ValueError(f"family={family!r} cannot express this model: it {why}")
        return FAMILIES[family]
    if prefer is not None and prefer in FAMILIES and FAMILIES[prefer].why_not(cfg) is None:
        return FAMILIES[prefer]
    reasons = {}
    for name in EXPORT_ORDER:
        why = FAMILIES[name].why_not(cfg)
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
            raise _refuse(where, "architectures", arch, f"expected {fam.architecture}")
    return fam
