"""Document sources: Hugging Face datasets (hub or local files) and the embedded stdlib corpus.

Every source ends up as a ``datasets.Dataset`` (map-style) or ``datasets.IterableDataset``
(streaming) with a text column; :func:`split_train_val` then gives a held-out validation set
for every source (a real split, or a deterministic fraction of documents).
"""

from __future__ import annotations

import functools
import os
import sysconfig
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from nextok.data import local_files

SOURCES = ("stdlib", "hub", "text", "json", "parquet")

# Directory names under the stdlib that hold test suites (not "library code" we want to learn
# from, and they contain deliberately odd files) or third-party packages.
_EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | Path | None = None) -> list[Path]:
    """Sorted ``.py`` files of the Python standard library, test folders and site-packages excluded."""
    root = Path(root) if root is not None else stdlib_root()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_DIRS)
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


@functools.lru_cache(maxsize=4)
def _stdlib_dataset(root: str) -> datasets.Dataset:
    base = Path(root)
    texts, paths = [], []
    for f in stdlib_files(base):
        text = f.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            texts.append(text)
            paths.append(f.relative_to(base).as_posix())
    return datasets.Dataset.from_dict({"text": texts, "path": paths})


def stdlib_dataset(root: str | Path | None = None) -> datasets.Dataset:
    """The stdlib ``.py`` sources as a ``Dataset`` with ``text`` and ``path`` columns.

    Read once per process (cached in memory): ~700 files, ~12 MB, well under a second.
    """
    return _stdlib_dataset(str(Path(root) if root is not None else stdlib_root()))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in (
        "0",
        "",
        "false",
        "False",
    ) or os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false", "False")


# the location keys each source reads (the others must stay null: a set one would be ignored)
SOURCE_LOCATION_KEYS = {
    "stdlib": (),
    "hub": ("path", "name", "data_files"),
    "text": ("data_files",),
    "json": ("data_files",),
    "parquet": ("data_files",),
}


def check_source_keys(source: str, **keys: Any) -> None:
    """Refuse a location key (``path``, ``name``, ``data_files``) that ``source`` does not read:
    it would be silently ignored and the run would read other data than the user named."""
    taken = SOURCE_LOCATION_KEYS.get(source, ())
    ignored = [k for k, v in keys.items() if v is not None and k not in taken]
    if ignored:
        uses = ", ".join(f"data.{k}" for k in taken) or "none of them"
        raise ValueError(
            f"data.source={source} does not read {', '.join(f'data.{k}' for k in ignored)} "
            f"(it reads {uses}); remove the key or choose a source that reads it"
        )


def _check_local_files(data_files: Any) -> None:
    """Fail early and clearly on a missing local file (instead of a deep `datasets` error)."""
    if data_files is None:
        raise ValueError("data.data_files is required for a local source (text/json/parquet)")
    for f in local_files.flat_files(data_files):
        f = str(f)
        if any(c in f for c in "*?[") or "://" in f:
            continue  # glob / remote patterns are resolved by `datasets`
        if not Path(f).exists():
            raise FileNotFoundError(f"data.data_files: local file not found: {f}")


def _all_empty(files: Any) -> bool:
    items = local_files.flat_files(files)
    return all(Path(str(f)).is_file() and Path(str(f)).stat().st_size == 0 for f in items)


def load_source(
    source: str,
    split: str,
    *,
    path: str | None = None,
    name: str | None = None,
    data_files: Any = None,
    streaming: bool = False,
    text_column: str = "text",
    document_unit: str = "file",
    encoding_errors: str = "strict",
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of a document source and check its text column.

    Local ``data_files`` may name folders (their files, recursively) and globs. ``source=text``
    reads each file as UTF-8 (``encoding_errors``) and makes documents of ``document_unit``
    (``file``, ``paragraph`` or ``line``; :mod:`nextok.data.local_files`)."""
    if source == "stdlib":
        if split not in ("train", "all"):
            raise ValueError(f"the stdlib source has only a 'train' split (got split={split!r})")
        ds = stdlib_dataset()
        if streaming:
            ds = ds.to_iterable_dataset()
    elif source in ("text", "json", "parquet"):
        _check_local_files(data_files)
        files = local_files.expand_data_files(data_files)
        files = files if isinstance(files, dict) else {"train": files}
        if isinstance(files, dict) and split not in files:
            raise ValueError(
                f"split {split!r} not in data.data_files (has {sorted(files)}); give data_files as a "
                "dict {split: files} or use split=train"
            )
        if source == "text":
            ds = local_files.load_text(files[split], document_unit, encoding_errors, streaming)
            _check_text_column(ds, text_column, f"{source}:{data_files}[{split}]")
            return ds
        try:
            ds = datasets.load_dataset(source, data_files=files, split=split, streaming=streaming)
        except Exception as e:  # noqa: BLE001 - re-raised with the file names
            if _all_empty(files):
                raise ValueError(f"dataset {source}:{data_files} is empty (no documents)") from e
            bad = (
                local_files.first_non_utf8(local_files.flat_files(files))
                if source == "json"
                else None
            )
            if bad:
                raise ValueError(bad) from None
            raise ValueError(
                f"could not read local {source} files {data_files} (split {split!r}): {e}"
            ) from e
    elif source == "hub":
        if not path:
            raise ValueError(
                "data.path (a Hugging Face dataset id, e.g. roneneldan/TinyStories) is required for source=hub"
            )
        try:
            ds = datasets.load_dataset(
                path,
                name,
                data_files=local_files.expand_data_files(data_files),
                split=split,
                streaming=streaming,
            )
        except Exception as e:  # noqa: BLE001 - re-raised with advice
            hint = ""
            if _offline() or "offline" in str(e).lower() or "connection" in str(e).lower():
                hint = (
                    " You appear to be offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set or no network) and the "
                    "dataset is not in the local cache. Download it once online, or use local files: "
                    "data=local_text data.source=text|json|parquet data.data_files=/path/to/files."
                )
            raise ValueError(
                f"could not load hub dataset {path!r} (name={name!r}, split={split!r}): {e}.{hint}"
            ) from e
    else:
        raise ValueError(f"unknown data.source {source!r}; expected one of {SOURCES}")
    _check_text_column(ds, text_column, f"{source}:{path or data_files or ''}[{split}]")
    return ds


def _check_text_column(
    ds: datasets.Dataset | datasets.IterableDataset, text_column: str, what: str
) -> None:
    columns = ds.column_names
    if columns is None:  # some streaming datasets only know their columns after the first row
        first = next(iter(ds.take(1)), None)
        if first is None:
            raise ValueError(f"dataset {what} is empty")
        columns = list(first)
    if text_column not in columns:
        raise ValueError(
            f"dataset {what} has no text column {text_column!r} (columns: {columns}); set data.text_column"
        )
    if isinstance(ds, datasets.Dataset) and len(ds) == 0:
        raise ValueError(f"dataset {what} is empty")


def _is_val_doc(text: str, val_fraction: float, seed: int) -> bool:
    """Content-hash split: the same document always lands on the same side, wherever it is read."""
    h = zlib.crc32(text.encode("utf-8", "replace"), seed & 0xFFFFFFFF)
    return (h % 1_000_000) < val_fraction * 1_000_000


def _keep(ex: dict, *, text_column: str, val_fraction: float, seed: int, val: bool) -> bool:
    return _is_val_doc(ex[text_column] or "", val_fraction, seed) == val


def split_train_val(
    ds: datasets.Dataset | datasets.IterableDataset,
    val_fraction: float,
    seed: int,
    text_column: str = "text",
) -> tuple[
    datasets.Dataset | datasets.IterableDataset, datasets.Dataset | datasets.IterableDataset
]:
    """Hold out a deterministic fraction of documents for validation.

    Map-style: a seeded random choice of ``max(1, round(n * val_fraction))`` documents (order kept).
    Streaming: a content hash decides, so it is stable under any sharding.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"data.val_fraction must be in (0, 1) when there is no validation split (got {val_fraction})"
        )
    if isinstance(ds, datasets.Dataset):
        n = len(ds)
        if n < 2:
            raise ValueError(
                f"need at least 2 documents to hold out a validation set (got {n}); for text "
                "files, data.document_unit=paragraph or line makes several documents of one file"
            )
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        rng = np.random.default_rng(seed)
        is_val = np.zeros(n, dtype=bool)
        is_val[rng.choice(n, size=n_val, replace=False)] = True
        return ds.select(np.flatnonzero(~is_val)), ds.select(np.flatnonzero(is_val))
    # partials of a module-level function (not lambdas): picklable for spawned DataLoader workers
    train = ds.filter(
        functools.partial(
            _keep, text_column=text_column, val_fraction=val_fraction, seed=seed, val=False
        )
    )
    val = ds.filter(
        functools.partial(
            _keep, text_column=text_column, val_fraction=val_fraction, seed=seed, val=True
        )
    )
    return train, val


def iter_texts(
    ds: datasets.Dataset | datasets.IterableDataset,
    text_column: str = "text",
    batch_size: int = 256,
) -> Iterator[list[str]]:
    """Yield lists of document texts in dataset order (batched reads are much faster)."""
    if isinstance(ds, datasets.Dataset):
        for i in range(0, len(ds), batch_size):
            yield [t or "" for t in ds[i : i + batch_size][text_column]]
    else:
        batch: list[str] = []
        for ex in ds:
            batch.append(ex[text_column] or "")
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
