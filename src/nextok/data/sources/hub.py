"""Hugging Face Hub datasets (``source: hub``), by id, config name and optional data files."""

from __future__ import annotations

import os

import datasets

from nextok.data.sources import text_files
from nextok.data.sources.base import DocumentSource, check_text_column
from nextok.data.sources.split import Documents


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in (
        "0",
        "",
        "false",
        "False",
    ) or os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false", "False")


class HubSource(DocumentSource):
    """``source: hub``: ``datasets.load_dataset(path, name, data_files=..., split=...)``."""

    kinds = ("hub",)
    location_keys = ("path", "name", "data_files")

    def load(self, split: str) -> Documents:
        path, name = self.path, self.name
        if not path:
            raise ValueError(
                "data.path (a Hugging Face dataset id, e.g. roneneldan/TinyStories) is required for source=hub"
            )
        try:
            ds = datasets.load_dataset(
                path,
                name,
                data_files=text_files.expand_data_files(self.data_files),
                split=split,
                streaming=self.streaming,
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
        check_text_column(ds, self.text_column, f"{self.describe()}[{split}]")
        return ds
