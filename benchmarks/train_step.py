"""Training-step throughput (forward + backward + AdamW) of nextok's Transformer vs a reference.

The reference is Hugging Face ``transformers.LlamaForCausalLM`` with the same shape (layers,
width, heads, KV heads, MLP width, vocab, tied embeddings, RoPE, RMSNorm, SwiGLU, SDPA attention),
measured in the same process, interleaved round by round so machine noise hits both alike.

    python benchmarks/train_step.py                       # small CPU shape
    python benchmarks/train_step.py --device cuda --dtype bfloat16 --d-model 768 --layers 12 \
        --heads 12 --kv-heads 4 --vocab 32000 --seq 1024 --batch 8
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch

from nextok.model import ModelConfig, Transformer


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="autocast dtype (weights and AdamW state stay fp32)",
    )
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_args()


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, ModelConfig]:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = ModelConfig(
        vocab_size=args.vocab,
        block_size=args.seq,
        n_layer=args.layers,
        n_head=args.heads,
        n_kv_head=args.kv_heads,
        d_model=args.d_model,
        norm="rmsnorm",
        pos="rope",
        mlp="swiglu",
        tie_embeddings=True,
    )
    ours = Transformer(cfg)
    ref_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        attn_implementation="sdpa",
    )
    ref = LlamaForCausalLM(ref_cfg)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    if n_ours != n_ref:
        raise SystemExit(f"shape mismatch: nextok has {n_ours} parameters, reference {n_ref}")
    return ours, ref, cfg


def make_step(model: torch.nn.Module, is_ref: bool, args: argparse.Namespace):
    device = torch.device(args.device)
    model.to(device).train()
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, fused=fused or None, foreach=None if fused else True
    )
    fwd = torch.compile(model) if args.compile else model
    dtype = getattr(torch, args.dtype)
    amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g).to(device)

    def step() -> float:
        with amp:
            if is_ref:
                loss = fwd(input_ids=x, labels=x).loss
            else:
                loss = fwd(x, x)[1]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def timed(step, n: int, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main() -> None:
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, ref, cfg = build(args)
    steps = {"nextok": make_step(ours, False, args), "reference": make_step(ref, True, args)}
    for step in steps.values():
        timed(step, args.warmup, args.device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(timed(step, args.steps, args.device))
    tokens = args.batch * args.seq
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    flops = ours.flops_per_token(args.seq)
    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else (f"cpu ({torch.get_num_threads()} threads)")
    )
    print(f"command: python {shlex.join(sys.argv)}")
    print(
        f"device: {device}; dtype {args.dtype}; compile {args.compile}; torch {torch.__version__}"
    )
    print(
        f"shape: {cfg.n_layer} layers, d_model {cfg.d_model}, heads {cfg.n_head}/{cfg.n_kv_head} "
        f"(q/kv), ffn {cfg.ffn_dim}, vocab {cfg.vocab_size}, batch {args.batch} x seq {args.seq}; "
        f"{sum(p.numel() for p in ours.parameters()) / 1e6:.2f}M params"
    )
    for name in steps:
        med = statistics.median(times[name])
        print(
            f"{name:>10}: {tps[name]:>12,.0f} tokens/s  ({med * 1e3:8.1f} ms/step, "
            f"{tps[name] * flops / 1e9:,.1f} GFLOP/s model FLOPs)"
        )
    print(f"ratio nextok / reference: {tps['nextok'] / tps['reference']:.3f}")


if __name__ == "__main__":
    main()
