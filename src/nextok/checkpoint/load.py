"""The model, config and tokenizer a checkpoint file or Hugging Face folder holds, loaded
with ``torch.load(weights_only=True)`` only.

The file's format is :mod:`nextok.checkpoint.format`; ``generate``, ``eval`` and ``export`` need
nothing but the file. A Hugging Face model folder loads through the same function
(:func:`load_hf_checkpoint`). ``data_config`` (the run's resolved ``data`` config, secrets
redacted) lets ``nextok-eval`` score the held-out split the model was trained without;
checkpoints without it (older ones, Hugging Face folders) still load, and nextok-eval then uses
its ``data`` group and says so (:mod:`nextok.cli.eval_data`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from nextok.checkpoint.format import (
    DCP_METADATA,
    META_KEY,
    model_state_dict,
    shorten_context,
)
from nextok.checkpoint.safe import safe_load
from nextok.checkpoint.verify import refuse_nonfinite, verify_checksums
from nextok.console import say
from nextok.data.tokenization.tokenizer import SpecialTokens, special_tokens
from nextok.model import ModelConfig, Transformer


@dataclass
class LoadedCheckpoint:
    model: Transformer
    tokenizer: Tokenizer
    config: ModelConfig
    meta: dict[str, Any]
    special: SpecialTokens | None = None  # EOS / BOS / pad of the tokenizer

    def __post_init__(self) -> None:
        if self.special is None:
            saved = self.meta.get("special_tokens")
            if saved:
                self.special = SpecialTokens.from_dict(saved)
            else:  # a checkpoint from before special tokens were recorded: nextok's convention
                try:
                    self.special = special_tokens(self.tokenizer)
                except ValueError as err:
                    raise ValueError(
                        f"the checkpoint records no special tokens and its tokenizer gives none: {err}"
                    ) from None


def verify_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """The tensors are what was saved (checksums; a one-line note for checkpoints older than
    them) and the weights are finite; else ``ValueError`` naming the tensor."""
    if not verify_checksums(ckpt, path):
        say(
            f"{path} records no checksums (written before nextok did): its tensors are not "
            "verified",
            file=sys.stderr,
        )
    refuse_nonfinite(model_state_dict(ckpt.get("state_dict") or {}), path)


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    block_size: int | None = None,
    verify: bool = True,
    eos_token: str | None = None,
    add_bos: bool | None = None,
) -> LoadedCheckpoint:
    """Rebuild the model (eval mode) and tokenizer from a ``nextok-train`` checkpoint file or a
    Hugging Face folder; ``block_size`` may shorten the context (a smaller KV cache). ``verify``:
    check the tensors against the checksums recorded at save time and refuse NaN/inf weights
    (:mod:`nextok.checkpoint.verify`); ``eos_token`` / ``add_bos``: a folder's special tokens."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf_checkpoint(path, device, dtype, block_size, verify, eos_token, add_bos)
    if eos_token is not None or add_bos is not None:
        raise ValueError(
            f"data.eos_token / data.add_bos apply to a Hugging Face folder; {path} records the "
            "special tokens its run trained with"
        )
    if path.is_dir() and (path / DCP_METADATA).is_file():
        raise IsADirectoryError(
            f"{path} is a sharded (distributed) checkpoint directory; consolidate it into one file "
            f"first: nextok-consolidate {path} (docs/distributed.md: 'FSDP')"
        )
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder, not a checkpoint: expected a .ckpt file written by nextok-train, "
            "a Hugging Face model folder (with config.json) or a sharded checkpoint folder "
            "(with .metadata)"
        )
    ckpt = safe_load(path)
    meta = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    if not meta or "model_config" not in meta:
        raise ValueError(
            f"{path} is not a nextok checkpoint (no '{META_KEY}.model_config' entry); "
            "expected a file written by nextok-train"
        )
    config = ModelConfig.from_dict(meta["model_config"])
    if verify:
        verify_checkpoint(ckpt, path)
    state = model_state_dict(ckpt["state_dict"])
    config = shorten_context(config, state, block_size, str(path))
    model = Transformer(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [
        k for k in missing if not k.startswith("lm_head.weight") or not config.tie_embeddings
    ]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the model config (missing={missing}, unexpected={unexpected})"
        )
    if "tokenizer_json" not in meta:
        raise ValueError(f"{path} holds no tokenizer ('{META_KEY}.tokenizer_json')")
    tokenizer = Tokenizer.from_str(meta["tokenizer_json"])
    model.to(device=device, dtype=dtype).eval()
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, config=config, meta=meta)


def load_hf_checkpoint(
    path: Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    block_size: int | None = None,
    verify: bool = True,
    eos_token: str | None = None,
    add_bos: bool | None = None,
) -> LoadedCheckpoint:
    """A Hugging Face model folder (``config.json`` + safetensors + ``tokenizer.json``);
    ``eos_token`` / ``add_bos`` override what its tokenizer config says (``data.*`` keys)."""
    from nextok.hf import build_model, read_hf_folder

    # inference: the file's dropout rates do not matter
    m = read_hf_folder(path, block_size=block_size, dropout=0.0, eos=eos_token, add_bos=add_bos)
    if verify:
        refuse_nonfinite(m.state_dict, path)
    if m.tokenizer is None:
        raise FileNotFoundError(f"{path / 'tokenizer.json'} not found (the model's tokenizer)")
    model = build_model(m.config, m.state_dict, str(path))
    model.to(device=device, dtype=dtype).eval()
    meta = {
        "model_config": m.config.to_dict(),
        "hf_family": m.family,
        "hf_generation": m.generation,
        "init_from": str(path),
    }
    return LoadedCheckpoint(model, m.tokenizer, m.config, meta, m.special)


def checkpoint_meta(path: str | Path, verify: bool = False) -> dict[str, Any]:
    """The ``nextok`` entry of a checkpoint file or sharded folder (loaded with weights_only; a
    folder's DCP ``.metadata`` through the restricted unpickler of :mod:`nextok.checkpoint.dcp`).
    ``verify``: a file's tensors must match their checksums and its weights be finite."""
    from nextok.checkpoint.dcp import read_sharded_meta

    path = Path(path)
    ckpt = read_sharded_meta(path) if path.is_dir() else safe_load(path)
    if verify and not path.is_dir() and isinstance(ckpt, dict):
        verify_checkpoint(ckpt, path)
    meta = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a nextok checkpoint (no '{META_KEY}' entry)")
    return meta
