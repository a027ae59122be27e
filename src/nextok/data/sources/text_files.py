"""Local files as documents: folders expanded recursively, text files split into a chosen unit.

A text file is one document by default (as in the stdlib corpus), or its blank-line paragraphs,
or its non-blank lines (``data.document_unit``); ``datasets``' own ``text`` builder would make
every line a document, blank ones included. Files are decoded as UTF-8; a file that is not UTF-8
is named with the byte offset of the first bad byte, unless ``data.encoding_errors=replace``
turns bad bytes into U+FFFD.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCUMENT_UNITS = ("file", "paragraph", "line")
ENCODING_ERRORS = ("strict", "replace")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")


def _files_in(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (hidden files and folders skipped), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(str(Path(dirpath) / f) for f in filenames if not f.startswith("."))
    return sorted(out)


def expand(entry: Any) -> list[str]:
    """One ``data_files`` entry (path, folder, glob or list of them) -> a list of file paths.

    Folders give their files recursively; globs are expanded (``**`` recursive); remote URLs and
    anything that matches nothing are passed through (the loader then names them)."""
    if isinstance(entry, list | tuple):
        return [f for e in entry for f in expand(e)]
    entry = str(entry)
    if "://" in entry:
        return [entry]
    path = Path(entry).expanduser()
    if path.is_dir():
        files = _files_in(path)
        if not files:
            raise ValueError(f"data.data_files: folder {entry} holds no files")
        return files
    if any(c in entry for c in "*?["):
        matches = sorted(glob.glob(str(path), recursive=True))
        return [f for m in matches for f in (_files_in(Path(m)) if Path(m).is_dir() else [m])] or [
            entry
        ]
    return [str(path)]


def flat_files(data_files: Any) -> list[str]:
    """Every entry of ``data.data_files`` (a path, a list, or ``{split: path | list}``) in one
    flat list, as given (folders and globs are not expanded: :func:`expand_data_files` does)."""
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in flat_files(v)]
    if isinstance(data_files, list | tuple):
        return [f for v in data_files for f in flat_files(v)]
    return [str(data_files)]


def expand_data_files(data_files: Any) -> Any:
    """``data.data_files`` with folders and globs replaced by file lists (dicts keep their splits)."""
    if data_files is None:
        return None
    if isinstance(data_files, dict):
        return {split: expand(v) for split, v in data_files.items()}
    return expand(data_files)


def decode(path: str, raw: bytes, errors: str) -> str:
    """UTF-8 text of a file; a bad byte is a one-line error naming the file and its offset."""
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {err.start:,} of {len(raw):,}: "
            f"{raw[err.start : err.start + 4]!r}); set data.encoding_errors=replace to replace "
            "bad bytes with U+FFFD, or leave the file out of data.data_files"
        ) from None


def first_non_utf8(files: list[str]) -> str | None:
    """The error line for the first listed file that is not UTF-8, or None (to explain a loader
    failure such as ``datasets``' "An error occurred while generating the dataset")."""
    for f in files:
        try:
            decode(f, Path(f).read_bytes(), "strict")
        except ValueError as err:
            return str(err)
        except OSError:
            continue
    return None


def split_document(text: str, unit: str) -> list[str]:
    """The documents in one file's text: the whole file, its paragraphs or its lines (blank ones
    dropped; a line keeps no newline, a paragraph no surrounding blank lines)."""
    if unit == "file":
        return [text] if text.strip() else []
    if unit == "paragraph":
        return [p.strip("\n") for p in _PARAGRAPH.split(text) if p.strip()]
    if unit == "line":
        return [ln for ln in text.splitlines() if ln.strip()]
    raise ValueError(f"data.document_unit must be one of {DOCUMENT_UNITS}, got {unit!r}")


def text_documents(files: list[str], unit: str = "file", errors: str = "strict") -> Iterator[dict]:
    """``{"text": document}`` for every document of ``files``, in file order."""
    if errors not in ENCODING_ERRORS:
        raise ValueError(f"data.encoding_errors must be one of {ENCODING_ERRORS}, got {errors!r}")
    for f in files:
        for doc in split_document(decode(f, Path(f).read_bytes(), errors), unit):
            yield {"text": doc}


def load_text(files: list[str], unit: str, errors: str, streaming: bool):
    """A ``datasets.Dataset`` (or ``IterableDataset`` when streaming) of text documents."""
    import datasets

    if streaming:
        return datasets.IterableDataset.from_generator(
            text_documents, gen_kwargs={"files": files, "unit": unit, "errors": errors}
        )
    docs = [d["text"] for d in text_documents(files, unit, errors)]
    if not docs:
        raise ValueError(
            f"the text files {files[:3]}{'...' if len(files) > 3 else ''} hold no documents"
        )
    return datasets.Dataset.from_dict({"text": docs})
