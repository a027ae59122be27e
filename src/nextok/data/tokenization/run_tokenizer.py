"""A run's tokenizer: obtained once, written into the run dir, shared by every rank.

The vocabulary decides the model's size, so the tokenizer is ready before the model is built
(:class:`RunTokenizer`, prepared once through ``LMDataModule.prepare_tokenizer`` by
``nextok.run.app``). One
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

from nextok.data.tokenization.encoder import TokenEncoder
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


class RunTokenizer:
    """One run's tokenizer with its special tokens and encoder, obtained once (the data module's
    collaborator; the run decides the source beforehand: ``nextok.run.tokenizer_source``).

    ``tokenizer_path`` (a file or HF folder), else ``<run_dir>/tokenizer.json``, else a BPE of
    ``vocab_size`` trained on ``training_texts()`` (``train_bytes`` of it; ``add_pad``: a pad
    token). ``eos``/``add_bos``: ``data.eos_token``/``data.add_bos`` over the tokenizer's
    config."""

    def __init__(
        self,
        tokenizer_path: str | None,
        run_dir: str | None,
        eos: str | None,
        add_bos: bool | None,
        vocab_size: int,
        train_bytes: int | None,
        add_pad: bool,
        encode_batch_docs: int,
        training_texts: Callable[[], Iterable[str]],
    ) -> None:
        self.path, self.run_dir, self.eos, self.add_bos = tokenizer_path, run_dir, eos, add_bos
        self.vocab_size, self.train_bytes, self.add_pad = vocab_size, train_bytes, add_pad
        self.encode_batch_docs, self.training_texts = encode_batch_docs, training_texts
        self.tokenizer: Tokenizer | None = None
        self._special: SpecialTokens | None = None
        self._encoder: TokenEncoder | None = None

    @property
    def file(self) -> Path | None:
        """The run dir's ``tokenizer.json`` (None without a run dir)."""
        return Path(self.run_dir) / TOKENIZER_FILE if self.run_dir else None

    def prepare(
        self,
        writer: bool = True,
        save_dir: str | Path | None = None,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> None:
        """Get the tokenizer, once (a no-op when it is there).

        ``writer`` (one process: global rank 0) loads or trains it and writes the tokenizer folder
        into ``save_dir`` (default: the run dir); the others wait for the run dir's
        ``tokenizer.json`` (unless ``tokenizer_path`` names one) and load it."""
        if self.tokenizer is not None:
            return
        if not writer and not self.path and self.file is not None:
            wait_for_file(self.file, timeout_s)
        self.tokenizer = obtain_tokenizer(
            self.path, self.file, self.training_texts, self.vocab_size, self.train_bytes,
            self.add_pad,
        )  # fmt: skip
        save_dir = save_dir or self.run_dir
        if writer and save_dir:
            write_tokenizer_folder(save_dir, self.tokenizer, self.special)

    def require(self) -> Tokenizer:
        if self.tokenizer is None:
            raise RuntimeError("LMDataModule: call prepare_tokenizer() or setup() first")
        return self.tokenizer

    @property
    def special(self) -> SpecialTokens:
        """EOS (document separator), BOS and pad, resolved once (:func:`resolve_special`)."""
        if self._special is None:
            folder = self.path or self.run_dir
            self._special = resolve_special(self.require(), folder, self.eos, self.add_bos)
        return self._special

    @property
    def encoder(self) -> TokenEncoder:
        """The tokenizer with the run's EOS and BOS: how every document becomes ids."""
        if self._encoder is None:
            tok, special = self.require(), self.special
            self._encoder = TokenEncoder(
                tok, special.eos_id(tok), special.bos_id(tok), self.encode_batch_docs
            )
        return self._encoder

    def ready(self, single_process: bool) -> None:
        """The tokenizer for ``setup`` (loaded, or built when ``single_process``), checked."""
        if self.tokenizer is None:
            missing = not self.path and (self.file is None or not self.file.exists())
            if missing and not single_process:
                raise ValueError(
                    "data.run_dir is required for multi-process runs: rank 0 saves the trained "
                    "tokenizer there and the other ranks load it"
                )
            self.prepare(writer=single_process)
        if not self.path:
            check_vocab_size(self.require(), self.vocab_size, self.file)
        _ = self.special  # fail early if the tokenizer cannot separate documents
