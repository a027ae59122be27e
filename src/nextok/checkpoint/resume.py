"""Which checkpoint a run resumes (``ckpt_path`` / ``resume=auto``), and the tokenizer its
weights were trained with.

A run dir can hold another run's ``tokenizer.json`` (two runs in one dir), and ``ckpt_path=``
into a new run dir would otherwise train a fresh tokenizer: either way the old weights would meet
other token ids, silently. Every checkpoint embeds its tokenizer (``nextok.tokenizer_json``), so
before any data work the resumed run takes that one: it is written to the run dir when the dir
has none, and a different one already there (or given as ``data.tokenizer_path``) is refused
with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from nextok.checkpoint.format import CHECKPOINT_DIR
from nextok.checkpoint.load import checkpoint_meta
from nextok.console import say
from nextok.data.tokenization.tokenizer import load_tokenizer, save_tokenizer

# data keys that only say how this machine reads the data: a resume may change them
MACHINE_LOCAL = {
    "data.num_workers",
    "data.cache_dir",
    "data.cache_shard_tokens",
    "data.pin_memory",
    "data.val_batch_size",
    "data.max_val_batches",
    "data.encode_batch_docs",
    "data.run_dir",
}
ABSENT = object()  # a key one side of a comparison does not have


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": value}`` for every leaf of a plain config (lists are leaves)."""
    if not isinstance(node, dict) or (prefix and not node):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def show_value(value: Any) -> str:
    """A config value for a one-line error (``(absent)`` for a missing key)."""
    return "(absent)" if value is ABSENT else repr(value)


def check_same_data(recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse, in one line naming the key, to resume a checkpoint on other data than the data
    config it recorded (``ckpt_path=`` into a new run dir takes the command's data config)."""
    before, now = leaves(recorded, "data"), leaves(current, "data")
    for path in sorted(set(before) | set(now)):
        old, new = before.get(path, ABSENT), now.get(path, ABSENT)
        if path in MACHINE_LOCAL or path == "data.tokenizer_path" or old == new:
            continue
        raise ValueError(
            f"{path}={show_value(new)} differs from the data the checkpoint was trained on "
            f"({path}={show_value(old)}, recorded in it); a resume keeps the data config: pass the "
            "run's data settings (resume=auto in its run dir does), or start a new run "
            "(init_from=<the checkpoint>)"
        )


def _canonical(tokenizer_json: str) -> str:
    """A tokenizer's JSON as the ``tokenizers`` library writes it, keys sorted (format-agnostic)."""
    return json.dumps(json.loads(Tokenizer.from_str(tokenizer_json).to_str()), sort_keys=True)


def pair_tokenizer(
    ckpt_path: str | Path, run_dir: Path, tokenizer_path: str | None, verify: bool = True
) -> bool:
    """Make the run use the checkpoint's tokenizer, or raise ``ValueError`` in one line
    (``verify``: see :func:`~nextok.checkpoint.load.checkpoint_meta`).

    Returns True when the checkpoint's tokenizer was written to ``<run_dir>/tokenizer.json``."""
    meta = checkpoint_meta(ckpt_path, verify)
    embedded = meta.get("tokenizer_json")
    if not embedded:
        return False  # a checkpoint without one: nothing to check against
    mine = _canonical(embedded)
    existing = Path(tokenizer_path) if tokenizer_path else run_dir / "tokenizer.json"
    if existing.is_dir():  # a Hugging Face folder (init_from, data.tokenizer_path)
        existing = existing / "tokenizer.json"
    if existing.exists():
        if _canonical(load_tokenizer(existing).to_str()) != mine:
            where = "data.tokenizer_path=" + str(existing) if tokenizer_path else str(existing)
            raise ValueError(
                f"{where} is not the tokenizer the weights in {ckpt_path} were trained with (it is "
                "embedded in the checkpoint); resume in a run dir without another tokenizer.json, "
                "or drop data.tokenizer_path"
            )
        return False
    save_tokenizer(Tokenizer.from_str(embedded), run_dir / "tokenizer.json")
    return True


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """Newest ``last*.ckpt`` in the run's checkpoint folder, or Lightning's Slurm preemption
    checkpoint ``<run_dir>/hpc_ckpt_N.ckpt`` (written on SIGUSR1 before a requeue) if newer.

    None only when there is provably no checkpoint: a ``checkpoints`` that is not a folder, a
    folder that cannot be listed, an entry that cannot be read, or checkpoints none of which is a
    ``last*.ckpt`` are refused with one line (``ValueError``) instead of starting fresh."""
    folder = run_dir / CHECKPOINT_DIR
    try:
        hpc = list(run_dir.glob("hpc_ckpt_*.ckpt"))
        if folder.is_symlink() and not folder.exists():
            raise ValueError(f"resume=auto: {folder} is a broken link")
        if folder.exists() and not folder.is_dir():
            raise ValueError(
                f"resume=auto: {folder} is not a folder (the run's checkpoints belong there); "
                "move it away, or pass ckpt_path=PATH / resume=null"
            )
        entries = list(folder.iterdir()) if folder.exists() else []
        last = [p for p in entries if p.name.startswith("last") and p.name.endswith(".ckpt")]
        candidates = sorted([*last, *hpc], key=lambda p: p.stat().st_mtime)
    except OSError as err:
        raise ValueError(
            f"resume=auto: cannot read {err.filename or folder}: {err.strerror or err}"
        ) from None
    if candidates:
        return candidates[-1]
    others = sorted(p.name for p in entries if p.name.endswith(".ckpt"))
    if others:
        raise ValueError(
            f"resume=auto: {folder} holds checkpoints ({', '.join(others[:3])}) but no last*.ckpt; "
            "pass ckpt_path=PATH to resume one of them, or resume=null to start fresh"
        )
    return None


def resolve_ckpt_path(ckpt_path: str | None, resume: object, run_dir: Path) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` if given, else (``resume=auto``) the newest one
    in the run dir, else None (a fresh run)."""
    if ckpt_path is not None:
        if not Path(ckpt_path).exists():
            raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
        return str(ckpt_path)
    if resume in (None, False, "none", "never"):
        return None
    if resume != "auto":
        raise ValueError(f"resume must be 'auto' or null, got {resume!r} (use ckpt_path=PATH)")
    found = find_resume_checkpoint(run_dir)
    say(
        "resume=auto: "
        + (
            f"resuming from {found}"
            if found
            else f"no checkpoint in {run_dir / CHECKPOINT_DIR}, starting fresh"
        )
    )
    return str(found) if found else None
