"""Cost of the per-tensor checkpoint checksums (``nextok.checkpoint.verify``) next to
``torch.save`` itself, interleaved: save, checksum, verify, for ``--rounds`` rounds (minimum of
each), on a tiny model and a GPT-2-small-shaped one (162M parameters, untied, fp32).

    python benchmarks/checkpoint_checksums.py
    python benchmarks/checkpoint_checksums.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from nextok.checkpoint.verify import CHECKSUMS, add_checksums, verify_checksums
from nextok.model import ModelConfig, Transformer

SHAPES = {
    "tiny": ModelConfig(vocab_size=512, block_size=32, n_layer=1, n_head=2, d_model=32),
    "162M": ModelConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, d_model=768),
}


def checkpoint(cfg: ModelConfig) -> dict:
    model = Transformer(cfg)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    return {"state_dict": state, "nextok": {"model_config": cfg.to_dict()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.pt")
        for name, cfg in SHAPES.items():
            ck = checkpoint(cfg)
            n = sum(v.numel() for v in ck["state_dict"].values())
            save, sums, verify = [], [], []
            for _ in range(args.rounds):
                ck["nextok"].pop(CHECKSUMS, None)
                t0 = time.perf_counter()
                torch.save(ck, path)
                save.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                add_checksums(ck)
                sums.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                verify_checksums(ck, path)
                verify.append(time.perf_counter() - t0)
            print(
                f"{name}: {n / 1e6:.2f}M parameters ({n * 4 / 1e6:.0f} MB): torch.save "
                f"{min(save) * 1e3:.1f} ms, checksums {min(sums) * 1e3:.1f} ms "
                f"({min(sums) / min(save):.2f}x the save), verify {min(verify) * 1e3:.1f} ms"
            )


if __name__ == "__main__":
    main()
