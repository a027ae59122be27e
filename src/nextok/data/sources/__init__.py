"""Document sources: one small class per kind of corpus, all ending as ``datasets`` documents.

``stdlib`` (:class:`StdlibSource`, the embedded corpus), ``hub`` (:class:`HubSource`) and local
``text`` / ``json`` / ``parquet`` files (:class:`LocalFilesSource`), on the base
:class:`~nextok.data.sources.base.DocumentSource` (train/validation documents, tokenizer texts,
cache-key parts). :func:`make_source` builds one from the ``data.*`` keys.
"""

from __future__ import annotations

from typing import Any

from nextok.data.sources.base import DocumentSource, check_text_column
from nextok.data.sources.hub import HubSource
from nextok.data.sources.local import LocalFilesSource
from nextok.data.sources.split import Documents, iter_texts, split_train_val
from nextok.data.sources.stdlib import StdlibSource, stdlib_dataset, stdlib_files, stdlib_root

SOURCE_CLASSES: dict[str, type[DocumentSource]] = {
    kind: cls for cls in (StdlibSource, HubSource, LocalFilesSource) for kind in cls.kinds
}
SOURCES = tuple(SOURCE_CLASSES)


def make_source(source: str, **keys: Any) -> DocumentSource:
    """The source named by ``data.source``, built from the other ``data.*`` keys of a source."""
    if source not in SOURCE_CLASSES:
        raise ValueError(f"unknown data.source {source!r}; expected one of {SOURCES}")
    return SOURCE_CLASSES[source](source, **keys)


def load_source(source: str, split: str, **keys: Any) -> Documents:
    """One split of a source's documents (``keys``: path, name, data_files, streaming,
    text_column, document_unit, encoding_errors)."""
    return make_source(source, **keys).load(split)


__all__ = [
    "SOURCES",
    "DocumentSource",
    "Documents",
    "HubSource",
    "LocalFilesSource",
    "StdlibSource",
    "check_text_column",
    "iter_texts",
    "load_source",
    "make_source",
    "split_train_val",
    "stdlib_dataset",
    "stdlib_files",
    "stdlib_root",
]
