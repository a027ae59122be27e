"""Model hyper-parameters as one dataclass, with validation and derived sizes (presets:
:mod:`nextok.model.presets`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from nextok.model.presets import PRESET_ARGS

NORMS = ("rmsnorm", "layernorm")
POSITIONS = ("rope", "learned")
MLPS = ("swiglu", "gelu", "gelu_exact", "relu2", "moe")
# RoPE frequency scalings (keys besides "type"), computed as transformers' ROPE_INIT_FUNCTIONS do.
ROPE_SCALINGS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


@dataclass
class ModelConfig:
    """Everything needed to build a :class:`~nextok.model.Transformer`.

    ``n_kv_head`` < ``n_head`` gives grouped-query attention (1 = multi-query). The MLP width is
    ``ffn_hidden`` if set, else ``ffn_multiplier * d_model`` rounded up to ``ffn_multiple_of``
    (multiplier defaults: 8/3 for SwiGLU so its parameter count matches a 4x GELU MLP, else 4).
    ``head_dim`` defaults to ``d_model // n_head`` (Qwen3-style models decouple them).
    ``qkv_bias`` / ``attn_out_bias`` / ``mlp_bias`` default to ``bias`` (which alone also gives
    LayerNorm its bias): Qwen2 biases q/k/v only, Llama's ``attention_bias`` q/k/v and output.
    ``mlp``: ``gelu`` is the tanh approximation (GPT-2's ``gelu_new``), ``gelu_exact`` the erf form.
    ``rope_scaling``: ``None``, ``{type: linear, factor}`` or ``{type: llama3, factor,
    low_freq_factor, high_freq_factor, original_max_position_embeddings}`` (Llama 3.1+).
    ``sliding_window``: layers in ``sliding_layers`` (null: all) attend only to the last
    ``sliding_window`` positions, the query's own included (Mistral, Qwen2/3, Gemma-style
    alternation); null: full causal attention everywhere.

    ``mlp="moe"``: Mixture-of-Experts SwiGLU MLPs (:mod:`nextok.model.moe`) in all but the first
    ``first_k_dense`` layers (those stay dense SwiGLU of width ``ffn_dim``): ``n_experts`` routed
    experts of width ``moe_ffn_hidden`` (null: ``ffn_dim / moe_top_k`` rounded up to
    ``ffn_multiple_of``, i.e. about the dense model's active parameters), ``moe_top_k`` per token
    (weights renormalised over the k when ``moe_norm_topk``), plus ``n_shared_experts`` always-on
    experts. Losses: ``moe_aux_loss_coef`` x load balancing + ``moe_z_loss_coef`` x router z-loss;
    ``moe_bias_update_rate`` > 0 turns on aux-loss-free bias balancing (DeepSeek-V3).

    Architecture switches from the modded-nanogpt speedrun records (all off by default):
    ``zero_init_proj`` starts every block as the identity (attention output and MLP down
    projections initialised to zero). ``logit_softcap``: logits become
    ``cap * tanh(logits / cap)`` (bounded by +-cap) for the loss and for sampling alike.
    ``value_residual``: every layer after the first mixes its values with the first layer's
    values of the same tokens, ``v + lamb * (v_first - v)``, one learned ``lamb`` per layer.
    ``unet_skips``: the output of block ``i < n_layer // 2`` is added, times a learned weight
    (init 1), to the input of block ``n_layer - 1 - i``. ``doc_mask``: training and validation
    on packed blocks pass per-position document ids, so attention does not cross documents
    (generation: the prompt is one document).
    """

    vocab_size: int = 4096
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None
    d_model: int = 128
    head_dim: int | None = None
    ffn_hidden: int | None = None
    ffn_multiplier: float | None = None
    ffn_multiple_of: int = 64
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    pos: str = "rope"
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    mlp: str = "swiglu"
    bias: bool = False
    qkv_bias: bool | None = None
    attn_out_bias: bool | None = None
    mlp_bias: bool | None = None
    dropout: float = 0.0
    tie_embeddings: bool = True
    qk_norm: bool = False
    sliding_window: int | None = None
    sliding_layers: list[int] | None = None
    init_std: float = 0.02
    n_experts: int = 8
    moe_top_k: int = 2
    n_shared_experts: int = 0
    moe_ffn_hidden: int | None = None
    first_k_dense: int = 0
    moe_norm_topk: bool = True
    moe_aux_loss_coef: float = 0.01
    moe_z_loss_coef: float = 0.001
    moe_bias_update_rate: float = 0.0
    zero_init_proj: bool = False
    logit_softcap: float | None = None
    value_residual: bool = False
    unet_skips: bool = False
    doc_mask: bool = False

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.head_dim is None and isinstance(self.n_head, int) and self.n_head > 0:
            if isinstance(self.d_model, int) and self.d_model % self.n_head:
                raise ValueError(
                    f"model.d_model ({self.d_model}) must be divisible by model.n_head "
                    f"({self.n_head}) unless model.head_dim is set"
                )
            self.head_dim = self.d_model // self.n_head
        for key in ("qkv_bias", "attn_out_bias", "mlp_bias"):
            if getattr(self, key) is None:
                setattr(self, key, self.bias)
        if self.rope_scaling is not None:
            self.rope_scaling = dict(self.rope_scaling)
        if self.sliding_layers is not None:
            self.sliding_layers = list(self.sliding_layers)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending key and what was expected."""
        for key in (
            "vocab_size",
            "block_size",
            "n_layer",
            "n_head",
            "n_kv_head",
            "d_model",
            "head_dim",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model.{key} must be a positive integer, got {value!r}")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"model.n_head ({self.n_head}) must be divisible by model.n_kv_head "
                f"({self.n_kv_head}) for grouped-query attention"
            )
        if self.norm not in NORMS:
            raise ValueError(f"model.norm must be one of {NORMS}, got {self.norm!r}")
        if self.pos not in POSITIONS:
            raise ValueError(f"model.pos must be one of {POSITIONS}, got {self.pos!r}")
        if self.mlp not in MLPS:
            raise ValueError(f"model.mlp must be one of {MLPS}, got {self.mlp!r}")
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension; model.head_dim = {self.head_dim}")
        self._validate_rope_scaling()
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.ffn_hidden is not None and self.ffn_hidden <= 0:
            raise ValueError(f"model.ffn_hidden must be positive, got {self.ffn_hidden}")
        if self.ffn_multiplier is not None and self.ffn_multiplier <= 0:
            raise ValueError(f"model.ffn_multiplier must be positive, got {self.ffn_multiplier}")
        if self.norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("model.norm_eps and model.rope_theta must be positive")
        if self.mlp == "moe":
            self._validate_moe()
        self._validate_sliding()
        for key in ("zero_init_proj", "value_residual", "unet_skips", "doc_mask"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"model.{key} must be true or false, got {getattr(self, key)!r}")
        if self.unet_skips and self.n_layer < 2:
            raise ValueError(f"model.unet_skips needs model.n_layer >= 2, got {self.n_layer}")
        cap = self.logit_softcap
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0
        ):
            raise ValueError(f"model.logit_softcap must be a positive number or null, got {cap!r}")

    def _validate_sliding(self) -> None:
        w, layers = self.sliding_window, self.sliding_layers
        if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w <= 0):
            raise ValueError(f"model.sliding_window must be a positive integer or null, got {w!r}")
        if layers is None:
            return
        if w is None and layers:
            raise ValueError("model.sliding_layers is set but model.sliding_window is null")
        bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < self.n_layer]
        if bad or len(set(layers)) != len(layers):
            raise ValueError(
                f"model.sliding_layers must be distinct layer indices in [0, {self.n_layer}), "
                f"got {layers}"
            )

    def slides(self, layer_idx: int) -> bool:
        """Whether layer ``layer_idx`` attends through the sliding window."""
        if self.sliding_window is None:
            return False
        return self.sliding_layers is None or layer_idx in self.sliding_layers

    def _validate_moe(self) -> None:
        for key in ("n_experts", "moe_top_k"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model.{key} must be a positive integer, got {value!r}")
        if self.moe_top_k > self.n_experts:
            raise ValueError(
                f"model.moe_top_k ({self.moe_top_k}) exceeds model.n_experts ({self.n_experts})"
            )
        if not 0 <= self.n_shared_experts or not 0 <= self.first_k_dense <= self.n_layer:
            raise ValueError(
                "model.n_shared_experts must be >= 0 and model.first_k_dense in [0, n_layer], got "
                f"{self.n_shared_experts} and {self.first_k_dense}"
            )
        if self.moe_ffn_hidden is not None and self.moe_ffn_hidden <= 0:
            raise ValueError(f"model.moe_ffn_hidden must be positive, got {self.moe_ffn_hidden}")
        for key in ("moe_aux_loss_coef", "moe_z_loss_coef", "moe_bias_update_rate"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.{key} must be >= 0, got {getattr(self, key)}")

    def _validate_rope_scaling(self) -> None:
        rs = self.rope_scaling
        if rs is None:
            return
        kind = rs.get("type")
        if kind not in ROPE_SCALINGS:
            raise ValueError(
                f"model.rope_scaling.type must be one of {sorted(ROPE_SCALINGS)}, got {kind!r}"
            )
        expected = {"type", *ROPE_SCALINGS[kind]}
        if set(rs) != expected:
            raise ValueError(
                f"model.rope_scaling of type {kind} needs exactly the keys {sorted(expected)}, "
                f"got {sorted(rs)}"
            )
        if self.pos != "rope":
            raise ValueError("model.rope_scaling needs model.pos=rope")
        if float(rs["factor"]) <= 0:
            raise ValueError(f"model.rope_scaling.factor must be positive, got {rs['factor']}")
        if kind == "llama3" and not float(rs["high_freq_factor"]) > float(rs["low_freq_factor"]):
            raise ValueError("model.rope_scaling: high_freq_factor must exceed low_freq_factor")

    # ------------------------------------------------------------------ derived sizes
    @property
    def ffn_dim(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        mult = self.ffn_multiplier
        if mult is None:
            mult = 8 / 3 if self.mlp in ("swiglu", "moe") else 4.0
        hidden = int(mult * self.d_model)
        m = self.ffn_multiple_of
        return m * math.ceil(hidden / m)

    @property
    def moe_ffn_dim(self) -> int:
        """Width of one routed (or shared) expert."""
        if self.moe_ffn_hidden is not None:
            return self.moe_ffn_hidden
        m = self.ffn_multiple_of
        return m * math.ceil(self.ffn_dim / self.moe_top_k / m)

    def is_moe_layer(self, layer_idx: int) -> bool:
        return self.mlp == "moe" and layer_idx >= self.first_k_dense

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """Build a config from a named preset, with keyword overrides."""
        if name not in PRESET_ARGS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESET_ARGS)}")
        # from the preset's own arguments, so derived fields (head_dim, biases) follow overrides
        return cls(**{**PRESET_ARGS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a plain dict (e.g. a checkpoint's ``model_config``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# every preset as a config (the table itself: nextok.model.presets)
PRESETS: dict[str, ModelConfig] = {name: ModelConfig.from_preset(name) for name in PRESET_ARGS}
