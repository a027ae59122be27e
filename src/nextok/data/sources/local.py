"""Local files (``source: text | json | parquet``): paths, folders (recursive), globs, lists, or
``{split: files}``. Text files are read by :mod:`nextok.data.sources.text_files` (a document per
file, paragraph or line); json and parquet go through ``datasets``' builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from nextok.data.sources import text_files
from nextok.data.sources.base import DocumentSource, check_text_column
from nextok.data.sources.split import Documents


def _check_local_files(data_files: Any) -> None:
    """Fail early and clearly on a missing local file (instead of a deep `datasets` error)."""
    if data_files is None:
        raise ValueError("data.data_files is required for a local source (text/json/parquet)")
    for f in text_files.flat_files(data_files):
        f = str(f)
        if any(c in f for c in "*?[") or "://" in f:
            continue  # glob / remote patterns are resolved by `datasets`
        if not Path(f).exists():
            raise FileNotFoundError(f"data.data_files: local file not found: {f}")


def _all_empty(files: Any) -> bool:
    items = text_files.flat_files(files)
    return all(Path(str(f)).is_file() and Path(str(f)).stat().st_size == 0 for f in items)


class LocalFilesSource(DocumentSource):
    """``data_files`` read as ``text`` (UTF-8, ``document_unit``), ``json`` or ``parquet``."""

    kinds = ("text", "json", "parquet")
    location_keys = ("data_files",)

    def load(self, split: str) -> Documents:
        source, data_files = self.kind, self.data_files
        _check_local_files(data_files)
        files = text_files.expand_data_files(data_files)
        files = files if isinstance(files, dict) else {"train": files}
        if split not in files:
            raise ValueError(
                f"split {split!r} not in data.data_files (has {sorted(files)}); give data_files as a "
                "dict {split: files} or use split=train"
            )
        if source == "text":
            ds = text_files.load_text(
                files[split], self.document_unit, self.encoding_errors, self.streaming
            )
        else:
            ds = self._load_builder(files, split)
        check_text_column(ds, self.text_column, f"{self.describe()}[{split}]")
        return ds

    def _load_builder(self, files: dict, split: str) -> Documents:
        """``datasets``' json/parquet builder; its failures become one line naming the files."""
        source, data_files = self.kind, self.data_files
        try:
            return datasets.load_dataset(
                source, data_files=files, split=split, streaming=self.streaming
            )
        except Exception as e:  # noqa: BLE001 - re-raised with the file names
            if _all_empty(files):
                raise ValueError(f"dataset {source}:{data_files} is empty (no documents)") from e
            flat = text_files.flat_files(files)
            bad = text_files.first_non_utf8(flat) if source == "json" else None
            if bad:
                raise ValueError(bad) from None
            raise ValueError(
                f"could not read local {source} files {data_files} (split {split!r}): {e}"
            ) from e
