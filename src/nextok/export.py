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


def to_hf_state_dict(model: Transformer) -> tuple[dict[str, torch.Tensor], dict]:
    """Map our weights to HF names; returns ``(state_dict, config.json dict)``."""
    cfg = model.config
    family = hf_family(cfg)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    q_dim, kv_dim = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    if family == "llama":
        out["model.embed_tokens.weight"] = sd["tok_emb.weight"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            q, k, v = sd[p + "attn.qkv.weight"].split([q_dim, kv_dim, kv_dim])
            gate, up = sd[p + "mlp.fc.weight"].chunk(2)
            out.update(
                {
                    h + "input_layernorm.weight": sd[p + "attn_norm.weight"],
                    h + "self_attn.q_proj.weight": q.contiguous(),
                    h + "self_attn.k_proj.weight": k.contiguous(),
                    h + "self_attn.v_proj.weight": v.contiguous(),
                    h + "self_attn.o_proj.weight": sd[p + "attn.proj.weight"],
                    h + "post_attention_layernorm.weight": sd[p + "mlp_norm.weight"],
                    h + "mlp.gate_proj.weight": gate.contiguous(),
                    h + "mlp.up_proj.weight": up.contiguous(),
                    h + "mlp.down_proj.weight": sd[p + "mlp.proj.weight"],
                }
            )
        out["model.norm.weight"] = sd["norm.weight"]
        if not cfg.tie_embeddings:
            out["lm_head.weight"] = sd["lm_head.weight"]
        hf_cfg = {
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
    else:  # gpt2: Conv1D stores weights as (in, out)
        out["transformer.wte.weight"] = sd["tok_emb.weight"]
        out["transformer.wpe.weight"] = sd["pos_emb.weight"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            out.update(
                {
                    h + "ln_1.weight": sd[p + "attn_norm.weight"],
                    h + "ln_1.bias": sd[p + "attn_norm.bias"],
                    h + "attn.c_attn.weight": sd[p + "attn.qkv.weight"].t().contiguous(),
                    h + "attn.c_attn.bias": sd[p + "attn.qkv.bias"],
                    h + "attn.c_proj.weight": sd[p + "attn.proj.weight"].t().contiguous(),
                    h + "attn.c_proj.bias": sd[p + "attn.proj.bias"],
                    h + "ln_2.weight": sd[p + "mlp_norm.weight"],
                    h + "ln_2.bias": sd[p + "mlp_norm.bias"],
                    h + "mlp.c_fc.weight": sd[p + "mlp.fc.weight"].t().contiguous(),
                    h + "mlp.c_fc.bias": sd[p + "mlp.fc.bias"],
                    h + "mlp.c_proj.weight": sd[p + "mlp.proj.weight"].t().contiguous(),
                    h + "mlp.c_proj.bias": sd[p + "mlp.proj.bias"],
                }
            )
        out["transformer.ln_f.weight"] = sd["norm.weight"]
        out["transformer.ln_f.bias"] = sd["norm.bias"]
        hf_cfg = {
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
    return out, hf_cfg


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
        sd = {
            "tok_emb.weight": hf["model.embed_tokens.weight"],
            "norm.weight": hf["model.norm.weight"],
        }
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            sd[p + "attn_norm.weight"] = hf[h + "input_layernorm.weight"]
            sd[p + "attn.qkv.weight"] = torch.cat(
                [hf[h + f"self_attn.{n}_proj.weight"] for n in "qkv"]
            )
            sd[p + "attn.proj.weight"] = hf[h + "self_attn.o_proj.weight"]
            sd[p + "mlp_norm.weight"] = hf[h + "post_attention_layernorm.weight"]
            sd[p + "mlp.fc.weight"] = torch.cat(
                [hf[h + "mlp.gate_proj.weight"], hf[h + "mlp.up_proj.weight"]]
            )
            sd[p + "mlp.proj.weight"] = hf[h + "mlp.down_proj.weight"]
        sd["lm_head.weight"] = hf[
            "model.embed_tokens.weight" if cfg.tie_embeddings else "lm_head.weight"
        ]
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
        pre = "transformer." if "transformer.wte.weight" in hf else ""
        sd = {
            "tok_emb.weight": hf[pre + "wte.weight"],
            "pos_emb.weight": hf[pre + "wpe.weight"],
            "norm.weight": hf[pre + "ln_f.weight"],
            "norm.bias": hf[pre + "ln_f.bias"],
            "lm_head.weight": hf[pre + "wte.weight"],
        }
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"{pre}h.{i}."
            for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
                sd[p + ours + ".weight"], sd[p + ours + ".bias"] = (
                    hf[h + theirs + ".weight"],
                    hf[h + theirs + ".bias"],
                )
            for ours, theirs in (
                ("attn.qkv", "attn.c_attn"),
                ("attn.proj", "attn.c_proj"),
                ("mlp.fc", "mlp.c_fc"),
                ("mlp.proj", "mlp.c_proj"),
            ):
                sd[p + ours + ".weight"] = hf[h + theirs + ".weight"].t().contiguous()
                sd[p + ours + ".bias"] = hf[h + theirs + ".bias"]
    else:
        raise ValueError(
            f"{hf_dir}/config.json: model_type {kind!r} is not supported (llama, gpt2)"
        )
    model = Transformer(cfg)
    model.load_state_dict(sd)
    return model
