"""``DocumentSource``: one corpus as train and validation documents (the base of every source).

A subclass says which location keys it reads (``path``, ``name``, ``data_files``) and how one
split is loaded (:meth:`DocumentSource.load`); the base gives validation (a real ``val_split``
or a held-out ``val_fraction``), the texts a tokenizer trains on, and the parts of the token
cache key. Constructor arguments are the ``data.*`` keys of a source.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import datasets

from nextok.data.sources import text_files
from nextok.data.sources.split import Documents, shuffled_texts, split_train_val
from nextok.plain import to_plain

# the config keys that name where a source's documents are (each source reads some of them)
LOCATION_KEYS = ("path", "name", "data_files")


class DocumentSource:
    """Train/validation documents of one corpus; subclasses implement :meth:`load`."""

    kinds: ClassVar[tuple[str, ...]] = ()  # the ``data.source`` values this class reads
    location_keys: ClassVar[tuple[str, ...]] = ()  # of LOCATION_KEYS, the ones it reads

    def __init__(
        self,
        kind: str,
        *,
        path: str | None = None,
        name: str | None = None,
        data_files: Any = None,
        split: str = "train",
        val_split: str | None = None,
        val_fraction: float = 0.01,
        seed: int = 1337,
        text_column: str = "text",
        document_unit: str = "file",
        encoding_errors: str = "strict",
        streaming: bool = False,
    ) -> None:
        for key, value, allowed in (
            ("document_unit", document_unit, text_files.DOCUMENT_UNITS),
            ("encoding_errors", encoding_errors, text_files.ENCODING_ERRORS),
        ):
            if value not in allowed:
                raise ValueError(f"data.{key} must be one of {allowed}, got {value!r}")
        self.kind = kind
        self.path, self.name, self.data_files = path, name, to_plain(data_files)
        self._refuse_unread_keys()
        self.split, self.val_split, self.val_fraction = split, val_split, val_fraction
        self.seed, self.text_column = seed, text_column
        self.document_unit, self.encoding_errors = document_unit, encoding_errors
        self.streaming = streaming
        self._docs: tuple[Documents, Documents] | None = None

    def _refuse_unread_keys(self) -> None:
        """A location key this source does not read would be silently ignored and the run would
        read other data than the user named: refuse it."""
        ignored = [k for k in LOCATION_KEYS if getattr(self, k) is not None]
        ignored = [k for k in ignored if k not in self.location_keys]
        if ignored:
            uses = ", ".join(f"data.{k}" for k in self.location_keys) or "none of them"
            raise ValueError(
                f"data.source={self.kind} does not read {', '.join(f'data.{k}' for k in ignored)} "
                f"(it reads {uses}); remove the key or choose a source that reads it"
            )

    def load(self, split: str) -> Documents:
        """One split's documents, its text column checked."""
        raise NotImplementedError

    def documents(self) -> tuple[Documents, Documents]:
        """``(train, val)`` documents (loaded once); val is a real split or held-out documents."""
        if self._docs is None:
            train = self.load(self.split)
            if self.val_split:
                self._docs = train, self.load(self.val_split)
            else:
                self._docs = split_train_val(train, self.val_fraction, self.seed, self.text_column)
        return self._docs

    def training_texts(self) -> Iterator[str]:
        """What a new BPE is trained on: the training documents' texts."""
        return shuffled_texts(self.documents()[0], self.text_column, self.seed)

    def key_parts(self) -> dict[str, Any]:
        """The settings that decide the documents (with the tokenizer: the token cache key)."""
        return {
            "source": self.kind,
            "path": self.path,
            "name": self.name,
            "data_files": self.data_files,
            "split": self.split,
            "val_split": self.val_split,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "text_column": self.text_column,
            "document_unit": self.document_unit,
            "encoding_errors": self.encoding_errors,
        }

    def describe(self) -> str:
        """How errors name this source's data, e.g. ``json:/data/a.jsonl``."""
        return f"{self.kind}:{self.path or self.data_files or ''}"


def check_text_column(ds: Documents, text_column: str, what: str) -> None:
    """A clear error when ``ds`` has no ``text_column`` or no documents."""
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
