"""A run's tokenizer: obtained once, written into the run dir, shared by every rank.

The vocabulary decides the model's size, so the tokenizer is ready before the model is built
(:meth:`nextok.data.LMDataModule.prepare_tokenizer`, called once by ``nextok.run.app``). One
*writer* (global rank 0) loads ``data.tokenizer_path``, reuses ``<run_dir>/tokenizer.json`` or
trains a BPE, and writes the run dir's tokenizer folder; every other rank waits for
``tokenizer.json`` to appear and loads it. Waiting on a file needs no process group (none exists
before ``Trainer.fit``), works the same under DDP, FSDP, torchrun and Slurm, and is safe because
every file is written atomically with ``tokenizer.json`` last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer

from nextok.data.tokenization.tokenizer import (
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    SpecialTokens,
    hf_tokenizer_config,
    load_tokenizer,
    load_tokenizer_config,
    save_tokenizer,
    special_tokens,
    train_bpe,
)
from nextok.io import atomic_write_text

log = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 600.0


def obtain_tokenizer(
    tokenizer_path: str | None,
    tokenizer_file: Path | None,
    training_texts: Callable[[], Iterable[str]],
    vocab_size: int,
    max_bytes: int | None,
    add_pad: bool,
) -> Tokenizer:
    """``tokenizer_path``, else an earlier run's ``tokenizer_file``, else a BPE trained on
    ``training_texts()`` (not saved here: :func:`write_tokenizer_folder` does)."""
    if tokenizer_path:
        return load_tokenizer(tokenizer_path)
    if tokenizer_file is not None and tokenizer_file.exists():
        return load_tokenizer(tokenizer_file)
    tok = train_bpe(training_texts(), vocab_size, max_bytes=max_bytes, add_pad=add_pad)
    log.info("trained a byte-level BPE tokenizer (vocab %d)", tok.get_vocab_size())
    return tok


def resolve_special(
    tok: Tokenizer, folder: str | None, eos: str | None, add_bos: bool | None
) -> SpecialTokens:
    """The special tokens: ``data.eos_token``/``data.add_bos`` over the folder's
    ``tokenizer_config.json`` (``folder``: the tokenizer path or the run dir) over defaults."""
    config = load_tokenizer_config(folder) if folder else {}
    return special_tokens(tok, config, eos=eos, add_bos=add_bos, where=str(folder or "tokenizer"))


def write_tokenizer_folder(
    folder: str | Path, tok: Tokenizer, special: SpecialTokens, replace: bool = False
) -> None:
    """Make ``folder`` a complete HF tokenizer folder: ``tokenizer_config.json`` (the special
    tokens), then ``tokenizer.json`` unless one is there (``replace``: always). Both atomic;
    ``tokenizer.json`` comes last because waiting ranks take it as the sign that the folder is
    complete."""
    folder = Path(folder)
    atomic_write_text(
        folder / TOKENIZER_CONFIG_FILE, json.dumps(hf_tokenizer_config(special), indent=2)
    )
    f = folder / TOKENIZER_FILE
    if replace or not f.exists():
        save_tokenizer(tok, f)
        log.info("tokenizer (vocab %d) saved to %s", tok.get_vocab_size(), f)


def wait_for_file(path: Path, timeout_s: float = WAIT_TIMEOUT_S, poll_s: float = 0.5) -> None:
    """Block until another process has written ``path`` (atomically), or fail after ``timeout_s``."""
    t0 = time.monotonic()
    while not path.exists():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(
                f"waited {timeout_s:.0f}s for rank 0 to write {path}; every rank needs the same "
                "run_dir on a shared filesystem"
            )
        time.sleep(poll_s)


def check_vocab_size(tok: Tokenizer, vocab_size: int, tokenizer_file: Path | None) -> None:
    """A run dir's trained tokenizer must not exceed ``data.vocab_size`` (another run's dir?)."""
    n = tok.get_vocab_size()
    if n > vocab_size:
        raise ValueError(
            f"tokenizer in {tokenizer_file} has {n} tokens but data.vocab_size={vocab_size}; "
            "use a fresh run_dir or the matching vocab_size"
        )
