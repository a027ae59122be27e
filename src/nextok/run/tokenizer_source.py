"""Where a run's tokenizer comes from, decided in one place before any data work.

The order: a resumed checkpoint's embedded tokenizer (its weights were trained with it), then
``data.tokenizer_path``, then ``init_from``'s tokenizer, then the run dir's ``tokenizer.json``
(an earlier start of this run), else a new byte-level BPE that the data module trains. The
checkpoint is checked against what the run would otherwise load (``data.tokenizer_path``,
``init_from``'s or the run dir's); a different one is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nextok.checkpoint.resume import pair_tokenizer
from nextok.console import say
from nextok.data.tokenization.run_tokenizer import write_tokenizer_folder
from nextok.data.tokenization.tokenizer import TOKENIZER_FILE, encodes_as_trained
from nextok.run.init_from import InitSource

INIT_TOKENIZER_DIR = "init_tokenizer"  # <run_dir>/init_tokenizer: a nextok checkpoint's tokenizer

Kind = Literal["checkpoint", "tokenizer_path", "init_from", "run_dir", "train"]


@dataclass(frozen=True)
class TokenizerSource:
    """``kind``: where the tokenizer comes from; ``path``: the ``data.tokenizer_path`` the data
    module loads (None: the run dir's ``tokenizer.json``, or a new BPE when there is none)."""

    kind: Kind
    path: str | None


def tokenizer_source(
    run_dir: Path,
    tokenizer_path: str | None,
    init: InitSource | None,
    ckpt_path: str | None,
    verify: bool = True,
    writer: bool = True,
) -> TokenizerSource:
    """Decide the run's tokenizer and write what the data module reads: ``init_from``'s
    tokenizer of a nextok checkpoint into ``<run_dir>/init_tokenizer`` (every rank, atomically),
    a resumed checkpoint's into ``<run_dir>/tokenizer.json`` when the run has none (``writer``:
    global rank 0; the other ranks wait for that file in the data module)."""
    path, kind = tokenizer_path or None, "tokenizer_path" if tokenizer_path else None
    if path is None and init is not None:
        path, kind = _init_tokenizer(init, run_dir), "init_from"
    if ckpt_path is not None:
        if writer and pair_tokenizer(ckpt_path, run_dir, path, verify):
            say(f"using the tokenizer embedded in {ckpt_path}")
        kind = "checkpoint"
    if kind is None:
        kind = "run_dir" if (run_dir / TOKENIZER_FILE).exists() else "train"
    return TokenizerSource(kind, path)


def _init_tokenizer(init: InitSource, run_dir: Path) -> str:
    """The folder holding ``init_from``'s tokenizer: a Hugging Face folder itself, a nextok
    checkpoint's written into the run dir."""
    from nextok.hf import is_hf_folder

    if init.tokenizer is None:
        raise ValueError(f"init_from={init.path} has no tokenizer.json; set data.tokenizer_path")
    if is_hf_folder(init.path):
        return init.path
    folder = run_dir / INIT_TOKENIZER_DIR
    write_tokenizer_folder(
        folder, encodes_as_trained(init.tokenizer, init.special), init.special, replace=True
    )
    return str(folder)
