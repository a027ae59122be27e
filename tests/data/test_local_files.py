"""Local files as documents: folders, document units, non-UTF-8 files."""

from __future__ import annotations

import pytest

from nextok.data import LMDataModule
from nextok.data.sources import load_source
from nextok.data.sources.text_files import expand_data_files, split_document, text_documents

TEXT = "first line\nsecond line\n\n\nnext paragraph\n  \nlast\n"


def test_units():
    assert split_document(TEXT, "file") == [TEXT]
    assert split_document(TEXT, "paragraph") == [
        "first line\nsecond line",
        "next paragraph",
        "last",
    ]
    assert split_document(TEXT, "line") == ["first line", "second line", "next paragraph", "last"]
    assert split_document(" \n\n", "file") == []
    with pytest.raises(ValueError, match="data.document_unit must be one of"):
        split_document(TEXT, "sentence")


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.txt").write_text(TEXT)
    (tmp_path / "a" / "b" / "two.md").write_text("two\n\nthree\n")
    (tmp_path / "a" / ".hidden").write_text("never read")
    return tmp_path / "a"


def test_folder_is_expanded_recursively(corpus):
    files = expand_data_files(str(corpus))
    assert files == [str(corpus / "b" / "two.md"), str(corpus / "one.txt")]
    assert expand_data_files({"train": str(corpus), "val": [str(corpus / "one.txt")]}) == {
        "train": files,
        "val": [str(corpus / "one.txt")],
    }
    ds = load_source("text", "train", data_files=str(corpus))
    assert ds["text"] == ["two\n\nthree\n", TEXT]  # whole files by default
    assert len(load_source("text", "train", data_files=str(corpus), document_unit="paragraph")) == 5
    assert len(load_source("text", "train", data_files=str(corpus), document_unit="line")) == 6
    streamed = load_source("text", "train", data_files=str(corpus), streaming=True)
    assert [ex["text"] for ex in streamed] == ds["text"]


def test_non_utf8_is_named_with_its_offset_or_replaced(corpus):
    bad = corpus / "b" / "latin1.txt"
    bad.write_bytes("caf\xe9 ok".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        list(text_documents([str(bad)]))
    assert str(err.value).startswith(f"{bad} is not UTF-8 text (byte 3 of 7:")
    assert "data.encoding_errors=replace" in str(err.value)
    docs = list(text_documents([str(bad)], errors="replace"))
    assert docs == [{"text": "caf\ufffd ok"}]


def test_datamodule_keys_and_single_file_hint(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text(TEXT)
    with pytest.raises(ValueError, match="data.encoding_errors must be one of"):
        LMDataModule(source="text", data_files=str(f), encoding_errors="ignore")
    dm = LMDataModule(source="text", data_files=str(f))
    with pytest.raises(ValueError, match="data.document_unit=paragraph or line"):
        dm.documents()  # one file = one document: nothing to hold out
    dm = LMDataModule(source="text", data_files=str(f), document_unit="line", val_fraction=0.25)
    train, val = dm.documents()
    assert len(train) + len(val) == 4


def test_flat_files_lists_every_entry_as_given():
    from nextok.data.sources.text_files import flat_files

    assert flat_files("a.txt") == ["a.txt"]
    assert flat_files(["a", "b/*.txt"]) == ["a", "b/*.txt"]
    assert flat_files({"train": ["a", "b"], "validation": "c"}) == ["a", "b", "c"]
