"""Mixture-of-Experts families: Qwen3-MoE and Mixtral, as tables on top of the Llama-like one.

Attention, norms and embeddings are the Llama-like family's rows; each MoE layer's MLP becomes a
router (``gate``) and per-expert tensors, the layout ``save_pretrained`` writes and the Hub holds
(``experts.{e}.gate_proj/up_proj/down_proj``; Mixtral: ``w1/w3/w2``). Our fused 3-D banks map to
them with the ``experts`` rows; ``expert_bias`` (aux-loss-free balancing) has no HF counterpart,
so it must be zero to export and is zero after import (``zeros`` rows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nextok.hf.family import Row, UnsupportedConfig, refuse
from nextok.hf.llama import LlamaLike
from nextok.model import ModelConfig

# config.json fields of the MoE families that only matter for training in transformers
TRAINING_ONLY = ("output_router_logits", "router_aux_loss_coef")


@dataclass(frozen=True)
class MoEFamily(LlamaLike):
    """Llama-like attention with MoE MLPs. ``mlp_key``: the MLP's name under a layer;
    ``names``: the HF names of an expert's (gate, up, down); ``dense_first``: the family can
    keep the first layers dense (Qwen3-MoE ``mlp_only_layers``); ``always_norm``: top-k weights
    are always renormalised (Mixtral)."""

    mlp_key: str = "mlp"
    names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    dense_first: bool = True
    always_norm: bool = False

    def why_not(self, cfg: ModelConfig) -> str | None:
        if cfg.mlp != "moe":
            return "needs mlp=moe"
        why = super().why_not(replace(cfg, mlp="swiglu"))
        if why is not None:
            return why
        if cfg.n_shared_experts:
            return "needs n_shared_experts=0 (no shared experts)"
        if cfg.first_k_dense and not self.dense_first:
            return "needs first_k_dense=0"
        if self.always_norm and not cfg.moe_norm_topk:
            return "needs moe_norm_topk=true"
        return None

    def config_out(self, cfg: ModelConfig) -> dict:
        out = super().config_out(replace(cfg, mlp="swiglu"))
        out.update(num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.moe_top_k)
        if self.always_norm:
            out.update(intermediate_size=cfg.moe_ffn_dim, router_jitter_noise=0.0)
        else:
            out.update(
                moe_intermediate_size=cfg.moe_ffn_dim,
                norm_topk_prob=cfg.moe_norm_topk,
                mlp_only_layers=list(range(cfg.first_k_dense)),
                decoder_sparse_step=1,
            )
        return out

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        c = dict(c)
        for key in TRAINING_ONLY:
            c.pop(key, None)
        n_experts = c.pop("num_local_experts", None) or c.pop("num_experts", None)
        c.pop("num_experts", None)
        top_k = c.pop("num_experts_per_tok", None)
        if not n_experts or not top_k:
            raise UnsupportedConfig(f"{where} lacks num_local_experts / num_experts_per_tok")
        if self.always_norm:
            jitter = c.pop("router_jitter_noise", 0.0) or 0.0
            if dropout is None and float(jitter) != 0.0:  # training-only noise in transformers
                raise refuse(
                    where,
                    "router_jitter_noise",
                    jitter,
                    "transformers multiplies the router's input by noise in training and nextok "
                    "trains without it; set model.dropout (e.g. model.dropout=0.0) to train "
                    "without the noise",
                )
            expert_width, norm, first_dense = c["intermediate_size"], True, 0
        else:
            expert_width = c.pop("moe_intermediate_size", None)
            norm = bool(c.pop("norm_topk_prob", False))
            first_dense = self._first_dense(c, where)
            if expert_width is None:
                raise UnsupportedConfig(f"{where} lacks moe_intermediate_size")
        base = super().config_in(c, where, block_size, dropout)
        return replace(
            base,
            mlp="moe",
            n_experts=int(n_experts),
            moe_top_k=int(top_k),
            moe_ffn_hidden=int(expert_width),
            moe_norm_topk=norm,
            first_k_dense=first_dense,
            n_shared_experts=0,
        )

    @staticmethod
    def _first_dense(c: dict, where: str) -> int:
        """Qwen3-MoE's dense layers must be the first k (``mlp_only_layers`` = 0..k-1)."""
        dense = sorted(c.pop("mlp_only_layers", None) or [])
        step = c.pop("decoder_sparse_step", 1)
        if step != 1:
            raise refuse(where, "decoder_sparse_step", step, "nextok's MoE layers are contiguous")
        if dense != list(range(len(dense))):
            raise refuse(
                where,
                "mlp_only_layers",
                dense,
                "nextok keeps only the first k layers dense (first_k_dense)",
            )
        return len(dense)

    def rows(self, cfg: ModelConfig) -> list[Row]:
        rows = super().rows(replace(cfg, mlp="swiglu"))
        moe = {i for i in range(cfg.n_layer) if cfg.is_moe_layer(i)}
        keep = [r for r in rows if not any(r[0].startswith(f"blocks.{i}.mlp.") for i in moe)]
        gate, up, down = self.names
        h, n = cfg.moe_ffn_dim, cfg.n_experts
        for i in sorted(moe):
            p, m = f"blocks.{i}.mlp.", f"model.layers.{i}.{self.mlp_key}."
            e = [f"{m}experts.{j}." for j in range(n)]
            keep += [
                (p + "router.weight", (m + "gate.weight",), "same", ()),
                (
                    p + "w_fc",
                    tuple(x + f"{w}.weight" for x in e for w in (gate, up)),
                    "experts",
                    (h, h),
                ),
                (p + "w_proj", tuple(x + f"{down}.weight" for x in e), "experts", ()),
                (p + "expert_bias", (), "zeros", (n,)),
            ]
        return keep


MOE_FAMILIES = {
    f.model_type: f
    for f in (
        MoEFamily("qwen3_moe", "Qwen3MoeForCausalLM", "model.", qk_norm=True, sliding="qwen_all"),
        MoEFamily(
            "mixtral",
            "MixtralForCausalLM",
            "model.",
            attn_bias="none",
            sliding="all",
            mlp_key="block_sparse_moe",
            names=("w1", "w3", "w2"),
            dense_first=False,
            always_norm=True,
            norm_eps_default=1e-5,
        ),
    )
}
