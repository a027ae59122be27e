"""``nextok-eval``: mean next-token loss and perplexity of a checkpoint on a data split.

Uses the checkpoint's tokenizer and model config (nothing else is needed from the training run)
and the ``data`` config group for the documents, so a model can be scored on any corpus::

    nextok-eval ckpt=runs/default/<time>/checkpoints/last.ckpt
    nextok-eval ckpt=PATH data=stdlib split=train max_batches=20 out=eval.json
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from nextok.cli._conf import conf_dir


def evaluate(cfg: DictConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="nextok-eval-") as scratch:
        return _evaluate(cfg, Path(scratch))


def _evaluate(cfg: DictConfig, scratch: Path) -> dict:
    import torch
    from hydra.utils import instantiate

    from nextok.checkpoint import load_checkpoint

    if cfg.split not in ("val", "train"):
        raise ValueError(f"split must be 'val' or 'train', got {cfg.split!r}")
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, cfg.dtype) if cfg.dtype else None
    loaded = load_checkpoint(cfg.ckpt, device=device, dtype=dtype)
    model, mcfg = loaded.model, loaded.config

    # The checkpoint's tokenizer, via a file, since the datamodule takes a tokenizer path.
    tok_file = scratch / "tokenizer.json"
    loaded.tokenizer.save(str(tok_file))
    with open_dict(cfg):
        cfg.model.block_size = cfg.model.block_size or mcfg.block_size
        cfg.run_dir = str(scratch)
        cfg.data.tokenizer_path = str(tok_file)
        cfg.data.vocab_size = loaded.tokenizer.get_vocab_size()
        if cfg.batch_size:
            cfg.data.batch_size = cfg.batch_size
            cfg.data.val_batch_size = cfg.batch_size
        if cfg.split == "val":
            # max_batches=null: the whole held-out split, as the end of a training run reports it
            # (data.max_val_batches only bounds the cheap periodic validations during training)
            cfg.data.max_val_batches = cfg.max_batches
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit" if cfg.split == "train" else "validate")
    dm.validate_model(mcfg.vocab_size, mcfg.block_size)
    loader = dm.val_dataloader() if cfg.split == "val" else dm.train_dataloader()
    max_batches = cfg.max_batches if cfg.max_batches is not None else (
        None if cfg.split == "val" else 100
    )

    total, count, t0 = 0.0, 0, time.perf_counter()
    with torch.inference_mode():
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device), y.to(device)
            _, loss = model(x, y)
            n = int((y != -100).sum())
            total += float(loss) * n
            count += n
    if count == 0:
        raise ValueError(f"the {cfg.split} split produced no batches to evaluate")
    loss = total / count
    result = {
        "ckpt": str(cfg.ckpt),
        "split": cfg.split,
        "loss": loss,
        "perplexity": math.exp(loss),
        "tokens": count,
        "block_size": int(cfg.model.block_size),
        "tokens_seen_in_training": loaded.meta.get("tokens_seen"),
        "seconds": time.perf_counter() - t0,
    }
    return result


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        result = evaluate(cfg)
    except (ValueError, FileNotFoundError, IsADirectoryError) as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"nextok-eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{result['split']} loss {result['loss']:.4f}  perplexity {result['perplexity']:.2f}  "
        f"({result['tokens']} tokens, block {result['block_size']})"
    )
    print(json.dumps(result))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
