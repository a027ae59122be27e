"""Hugging Face format out (and in): Llama-style and GPT-2-style models as safetensors + config.

Exported folders load with ``transformers.AutoModelForCausalLM.from_pretrained`` and
``PreTrainedTokenizerFast``, which also makes them a reference implementation for tests.
Our RoPE uses the half-rotation convention of HF Llama, so no q/k permutation is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from nextok.model import ModelConfig, Transformer

EOT = "<|endoftext|>"


def hf_family(cfg: ModelConfig) -> str:
    """``"llama"`` or ``"gpt2"``: which HF architecture computes exactly what ``cfg`` computes."""
    if (cfg.pos, cfg.norm, cfg.mlp, cfg.bias, cfg.qk_norm) == (
        "rope",
        "rmsnorm",
        "swiglu",
        False,
        False,
    ):
        return "llama"
    if (
        (cfg.pos, cfg.norm, cfg.mlp, cfg.qk_norm, cfg.tie_embeddings)
        == (
            "learned",
            "layernorm",
            "gelu",
            False,
            True,
        )
        and cfg.bias
        and cfg.n_kv_head == cfg.n_head
    ):
        return "gpt2"
    raise ValueError(
        "this model has no exact Hugging Face equivalent: export supports Llama-style "
        "(pos=rope, norm=rmsnorm, mlp=swiglu, bias=false, qk_norm=false) and GPT-2-style "
        "(pos=learned, norm=layernorm, mlp=gelu, bias=true, tie_embeddings=true, n_kv_head=n_head) "
        f"configs; got pos={cfg.pos} norm={cfg.norm} mlp={cfg.mlp} bias={cfg.bias} "
        f"qk_norm={cfg.qk_norm} tie_embeddings={cfg.tie_embeddings}"
    )


def _special_ids(tokenizer: Tokenizer | None) -> dict[str, int | None]:
    eot = tokenizer.token_to_id(EOT) if tokenizer is not None else None
    return {"bos_token_id": eot, "eos_token_id": eot}


# How our weights map to HF names, used in both directions. One row per tensor of ours:
# (our key, HF keys, how): "same" copies, "split" cuts our fused tensor into the HF tensors
# along dim 0 (qkv -> q/k/v, SwiGLU fc -> gate/up), "t" transposes (GPT-2's Conv1D is (in, out)).
_Row = tuple[str, list[str], str]


def _weight_map(cfg: ModelConfig, family: str) -> list[_Row]:
    rows: list[_Row] = []
    if family == "llama":
        rows += [
            ("tok_emb.weight", ["model.embed_tokens.weight"], "same"),
            ("norm.weight", ["model.norm.weight"], "same"),
        ]
        if not cfg.tie_embeddings:
            rows.append(("lm_head.weight", ["lm_head.weight"], "same"))
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            rows += [
                (p + "attn_norm.weight", [h + "input_layernorm.weight"], "same"),
                (p + "attn.qkv.weight", [h + f"self_attn.{n}_proj.weight" for n in "qkv"], "split"),
                (p + "attn.proj.weight", [h + "self_attn.o_proj.weight"], "same"),
                (p + "mlp_norm.weight", [h + "post_attention_layernorm.weight"], "same"),
                (
                    p + "mlp.fc.weight",
                    [h + "mlp.gate_proj.weight", h + "mlp.up_proj.weight"],
                    "split",
                ),
                (p + "mlp.proj.weight", [h + "mlp.down_proj.weight"], "same"),
            ]
        return rows
    rows += [
        ("tok_emb.weight", ["transformer.wte.weight"], "same"),
        ("pos_emb.weight", ["transformer.wpe.weight"], "same"),
        ("norm.weight", ["transformer.ln_f.weight"], "same"),
        ("norm.bias", ["transformer.ln_f.bias"], "same"),
    ]
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            rows += [(p + f"{ours}.{t}", [h + f"{theirs}.{t}"], "same") for t in ("weight", "bias")]
        for ours, theirs in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("mlp.fc", "mlp.c_fc"),
            ("mlp.proj", "mlp.c_proj"),
        ):
            rows += [
                (p + ours + ".weight", [h + theirs + ".weight"], "t"),
                (p + ours + ".bias", [h + theirs + ".bias"], "same"),
            ]
    return rows


def _split_sizes(cfg: ModelConfig, key: str) -> list[int]:
    if key.endswith("attn.qkv.weight"):
        return [cfg.n_head * cfg.head_dim] + [cfg.n_kv_head * cfg.head_dim] * 2
    return [cfg.ffn_dim, cfg.ffn_dim]


def _hf_config(cfg: ModelConfig, family: str) -> dict:
    if family == "llama":
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "intermediate_size": cfg.ffn_dim,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head,
            "head_dim": cfg.head_dim,
            "max_position_embeddings": cfg.block_size,
            "rms_norm_eps": cfg.norm_eps,
            "rope_theta": cfg.rope_theta,
            "hidden_act": "silu",
            "tie_word_embeddings": cfg.tie_embeddings,
            "attention_bias": False,
            "mlp_bias": False,
            "torch_dtype": "float32",
        }
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.ffn_dim,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def to_hf_state_dict(model: Transformer) -> tuple[dict[str, torch.Tensor], dict]:
    """Map our weights to HF names; returns ``(state_dict, config.json dict)``."""
    cfg = model.config
    family = hf_family(cfg)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, how in _weight_map(cfg, family):
        if how == "split":
            parts = sd[ours].split(_split_sizes(cfg, ours))
        else:
            parts = [sd[ours].t() if how == "t" else sd[ours]]
        out.update({name: t.contiguous() for name, t in zip(theirs, parts, strict=True)})
    return out, _hf_config(cfg, family)


def export_hf(model: Transformer, out_dir: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (if given) the tokenizer files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state, hf_cfg = to_hf_state_dict(model)
    hf_cfg.update(_special_ids(tokenizer))
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    if tokenizer is not None:
        tokenizer.save(str(out_dir / "tokenizer.json"))
        special = {"tokenizer_class": "PreTrainedTokenizerFast"}
        if tokenizer.token_to_id(EOT) is not None:
            special.update(bos_token=EOT, eos_token=EOT, unk_token=EOT)
        (out_dir / "tokenizer_config.json").write_text(json.dumps(special, indent=2))
    return out_dir


def import_hf(hf_dir: str | Path) -> Transformer:
    """Load an exported (or compatible HF Llama / GPT-2) folder back into a :class:`Transformer`."""
    hf_dir = Path(hf_dir)
    for name in ("config.json", "model.safetensors"):
        if not (hf_dir / name).is_file():
            raise FileNotFoundError(
                f"{hf_dir / name} not found (expected a Hugging Face model folder)"
            )
    c = json.loads((hf_dir / "config.json").read_text())
    hf = load_file(str(hf_dir / "model.safetensors"))
    kind = c.get("model_type")
    if kind == "llama":
        cfg = ModelConfig(
            vocab_size=c["vocab_size"],
            block_size=c["max_position_embeddings"],
            n_layer=c["num_hidden_layers"],
            n_head=c["num_attention_heads"],
            n_kv_head=c.get("num_key_value_heads", c["num_attention_heads"]),
            d_model=c["hidden_size"],
            ffn_hidden=c["intermediate_size"],
            norm="rmsnorm",
            norm_eps=c.get("rms_norm_eps", 1e-5),
            pos="rope",
            rope_theta=c.get("rope_theta", 10000.0),
            mlp="swiglu",
            bias=False,
            tie_embeddings=c.get("tie_word_embeddings", False),
        )
    elif kind == "gpt2":
        cfg = ModelConfig(
            vocab_size=c["vocab_size"],
            block_size=c["n_positions"],
            n_layer=c["n_layer"],
            n_head=c["n_head"],
            d_model=c["n_embd"],
            ffn_hidden=c.get("n_inner") or 4 * c["n_embd"],
            norm="layernorm",
            norm_eps=c.get("layer_norm_epsilon", 1e-5),
            pos="learned",
            mlp="gelu",
            bias=True,
            tie_embeddings=True,
        )
        if "wte.weight" in hf:  # saved from GPT2Model (no "transformer." prefix)
            hf = {"transformer." + k: v for k, v in hf.items()}
    else:
        raise ValueError(
            f"{hf_dir}/config.json: model_type {kind!r} is not supported (llama, gpt2)"
        )
    sd = {}
    for ours, theirs, how in _weight_map(cfg, hf_family(cfg)):
        missing = [k for k in theirs if k not in hf]
        if missing:
            raise ValueError(f"{hf_dir}/model.safetensors lacks {missing}")
        if how == "split":
            sd[ours] = torch.cat([hf[k] for k in theirs])
        else:
            sd[ours] = hf[theirs[0]].t().contiguous() if how == "t" else hf[theirs[0]]
    model = Transformer(cfg)
    # tied LM head: lm_head.weight is tok_emb.weight, so it needs no tensor of its own
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight" or not cfg.tie_embeddings]:
        raise ValueError(
            f"{hf_dir}: weights do not match (missing={missing}, unexpected={unexpected})"
        )
    return model
