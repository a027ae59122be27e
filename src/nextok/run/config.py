"""What a composed config decides before any object is built: the model config (vocabulary from
the tokenizer), gradient accumulation (from the world size), and the config as saved and logged
(``config.yaml``, secrets redacted for loggers)."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nextok.io import atomic_write_text
from nextok.model import ModelConfig

# Secret-looking keys (api_key, hf_token, password, ...); not eos_token, max_new_tokens, tokenizer_path.
SECRET_KEY = re.compile(
    r"(api[_-]?key|^token$|(hf|access|api|auth)[_-]?token|secret|passw|credential|auth)",
    re.IGNORECASE,
)


def redact(container: Any) -> Any:
    """Copy of a plain config with values of secret-looking keys replaced (for loggers)."""
    if isinstance(container, dict):
        return {
            k: (
                "<redacted>"
                if SECRET_KEY.search(str(k))
                and v is not None
                and not isinstance(v, dict | list | bool)
                else redact(v)
            )
            for k, v in container.items()
        }
    if isinstance(container, list):
        return [redact(v) for v in container]
    return container


def merged(cfg: DictConfig, overlay: dict[str, Any]) -> DictConfig:
    """A new struct config: ``cfg`` with ``overlay``'s values (new keys allowed); interpolations
    in ``cfg`` resolve against the result. ``cfg`` itself is not written."""
    base = copy.deepcopy(cfg)
    OmegaConf.set_struct(base, False)
    out = OmegaConf.merge(base, overlay)
    OmegaConf.set_struct(out, True)
    return out


def print_config(cfg: DictConfig) -> None:
    """Print the resolved config as a rich tree (rank 0)."""
    import rich
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("[bold]config[/bold]")
    for key, value in cfg.items():
        branch = tree.add(f"[bold cyan]{key}[/bold cyan]")
        if isinstance(value, DictConfig):
            text = OmegaConf.to_yaml(value, resolve=True)
            branch.add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
        else:
            branch.add(repr(value))
    rich.print(tree)


def save_config(cfg: DictConfig, run_dir: Path, resuming: bool = False) -> Path:
    """Write the resolved config to ``<run_dir>/config.yaml`` (atomically); return the file.

    ``config.yaml`` stays the run's own config: a resume whose config differs is recorded beside
    it as ``config.resume-<N>.yaml``, the history of what each resume used."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    target = run_dir / "config.yaml"
    if resuming and target.is_file():
        if target.read_text(encoding="utf-8") == text:
            return target
        n = 1
        while (run_dir / f"config.resume-{n}.yaml").exists():
            n += 1
        target = run_dir / f"config.resume-{n}.yaml"
    atomic_write_text(target, text)
    return target


def pad_vocab(n: int, multiple: int | None) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (faster matmuls); unchanged for 0/1/None."""
    if not multiple or multiple <= 1:
        return n
    return multiple * math.ceil(n / multiple)


def resolve_model_config(cfg: DictConfig, tokenizer_vocab: int) -> ModelConfig:
    """The model config with ``vocab_size`` from the tokenizer when it is null (one source of truth)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_", None)
    vocab = model.get("vocab_size")
    if vocab is None:
        model["vocab_size"] = pad_vocab(tokenizer_vocab, cfg.get("pad_vocab_multiple_of"))
    elif vocab < tokenizer_vocab:
        raise ValueError(
            f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary "
            f"({tokenizer_vocab}); set model.vocab_size=null to take it from the tokenizer, or "
            f">= {tokenizer_vocab}"
        )
    return ModelConfig.from_dict(model)


def accumulation(cfg: Mapping[str, Any], micro_batch: int, block_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step for the configured global batch (sequences or tokens).

    ``world_size`` is the number of data-parallel ranks (tensor-parallel ranks share data)."""
    per_step = micro_batch * world_size
    seqs, tokens = cfg.get("global_batch_size"), cfg.get("global_batch_tokens")
    if seqs is not None and tokens is not None:
        raise ValueError("set only one of global_batch_size (sequences) and global_batch_tokens")
    if tokens is not None:
        if tokens % block_size:
            raise ValueError(
                f"global_batch_tokens={tokens} is not a multiple of the block size ({block_size})"
            )
        seqs = tokens // block_size
    if seqs is None:
        return 1
    if seqs % per_step:
        raise ValueError(
            f"global batch of {seqs} sequences is not divisible by data.batch_size x world size = "
            f"{micro_batch} x {world_size} = {per_step}; adjust global_batch_size/"
            "global_batch_tokens or data.batch_size"
        )
    return seqs // per_step
