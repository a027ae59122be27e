"""Document sources: stdlib corpus, local text/json/parquet, held-out validation, clear errors."""

from __future__ import annotations

import json

import datasets
import pytest

from nextok.data import LMDataModule, load_source, split_train_val, stdlib_dataset, stdlib_files
from nextok.data.sources.split import _is_val_doc
from nextok.data.sources.stdlib import stdlib_root


def test_stdlib_files_sorted_and_exclude_tests_and_site_packages():
    files = stdlib_files()
    root = stdlib_root()
    rel = [f.relative_to(root).as_posix() for f in files]
    assert len(rel) > 300
    assert rel == sorted(rel)
    assert "os.py" in rel and "json/decoder.py" in rel
    for r in rel:
        parts = r.split("/")
        assert not {"test", "tests", "idle_test", "site-packages"} & set(parts[:-1]), r
    assert stdlib_files() == files  # deterministic


def test_stdlib_dataset_columns_and_cached():
    ds = stdlib_dataset()
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["text", "path"]
    assert ds[0]["path"] == min(list(ds["path"]))
    assert "import" in ds[list(ds["path"]).index("os.py")]["text"]
    assert stdlib_dataset() is ds  # read once per process


def test_local_text_json_parquet(tmp_path, docs):
    (tmp_path / "a.txt").write_text("line one\nline two\n")
    ds = load_source("text", "train", data_files=str(tmp_path / "a.txt"), document_unit="line")
    assert list(ds["text"]) == ["line one", "line two"]
    ds = load_source("text", "train", data_files=str(tmp_path / "a.txt"))  # default: whole files
    assert list(ds["text"]) == ["line one\nline two\n"]

    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs[:5]))
    ds = load_source("json", "train", data_files=str(tmp_path / "a.jsonl"), text_column="body")
    assert list(ds["body"]) == docs[:5]

    datasets.Dataset.from_dict({"text": docs[:7]}).to_parquet(str(tmp_path / "a.parquet"))
    ds = load_source("parquet", "train", data_files=[str(tmp_path / "a.parquet")])
    assert list(ds["text"]) == docs[:7]
    it = load_source("parquet", "train", data_files=str(tmp_path / "a.parquet"), streaming=True)
    assert isinstance(it, datasets.IterableDataset)
    assert [ex["text"] for ex in it] == docs[:7]


def test_held_out_validation_is_deterministic_and_disjoint(docs):
    ds = datasets.Dataset.from_dict({"text": docs})
    train, val = split_train_val(ds, 0.1, seed=5)
    train2, val2 = split_train_val(ds, 0.1, seed=5)
    assert list(val["text"]) == list(val2["text"]) and list(train["text"]) == list(train2["text"])
    assert len(val) == 12 and len(train) == len(docs) - 12
    assert not set(list(train["text"])) & set(list(val["text"]))
    assert sorted(list(train["text"]) + list(val["text"])) == sorted(docs)
    # document order is preserved inside each side
    assert list(train["text"]) == [d for d in docs if d not in set(list(val["text"]))]
    _, val3 = split_train_val(ds, 0.1, seed=6)
    assert list(val3["text"]) != list(val["text"])


def test_held_out_validation_streaming_uses_content_hash(docs):
    it = datasets.Dataset.from_dict({"text": docs}).to_iterable_dataset()
    train, val = split_train_val(it, 0.2, seed=1)
    t, v = [e["text"] for e in train], [e["text"] for e in val]
    assert v and t and not set(t) & set(v) and sorted(t + v) == sorted(docs)
    assert v == [d for d in docs if _is_val_doc(d, 0.2, 1)]


def test_val_split_from_data_files(tmp_path, docs):
    from helpers.corpora import write_jsonl

    tr = write_jsonl(tmp_path / "train.jsonl", docs[:80])
    va = write_jsonl(tmp_path / "val.jsonl", docs[80:])
    dm = LMDataModule(
        source="json",
        data_files={"train": str(tr), "validation": str(va)},
        val_split="validation",
        vocab_size=300,
        block_size=16,
        batch_size=2,
    )
    train, val = dm.documents()
    assert list(train["text"]) == docs[:80] and list(val["text"]) == docs[80:]


# ---------------------------------------------------------------- errors
def test_missing_local_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.data_files.*nope.jsonl"):
        load_source("json", "train", data_files=str(tmp_path / "nope.jsonl"))


def test_unknown_hub_dataset_offline_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match="(?s)no-such-user/no-such-dataset.*offline.*local files"):
        load_source("hub", "train", path="no-such-user/no-such-dataset")


def test_missing_text_column_is_clear(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "hello"}) + "\n")
    with pytest.raises(ValueError, match="no text column 'text'.*content.*data.text_column"):
        load_source("json", "train", data_files=str(tmp_path / "a.jsonl"))
    with pytest.raises(ValueError, match="no text column"):
        load_source("json", "train", data_files=str(tmp_path / "a.jsonl"), streaming=True)


def test_empty_dataset_is_clear(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        dm = LMDataModule(source="text", data_files=str(tmp_path / "empty.txt"), vocab_size=300)
        dm.prepare_data()


def test_unknown_source_and_missing_hub_path():
    with pytest.raises(ValueError, match="unknown data.source"):
        LMDataModule(source="csv")
    with pytest.raises(ValueError, match="data.path"):
        load_source("hub", "train")


def test_too_little_data_for_one_block(tmp_path):
    (tmp_path / "a.txt").write_text("a\nb\nc\n")
    dm = LMDataModule(
        source="text",
        data_files=str(tmp_path / "a.txt"),
        vocab_size=300,
        block_size=64,
        document_unit="line",
    )
    dm.prepare_data()
    with pytest.raises(ValueError, match="fewer than one block"):
        dm.setup("fit")


def test_hub_loader_reads_the_named_data_files(tmp_path, monkeypatch):
    """``source=hub path=json data_files=X`` reads X (a packaged loader), not the current folder."""
    (tmp_path / "mine.jsonl").write_text(json.dumps({"text": "my document"}) + "\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "other.json").write_text(json.dumps({"text": "not mine"}) + "\n")
    monkeypatch.chdir(cwd)
    ds = load_source("hub", "train", path="json", data_files=str(tmp_path / "mine.jsonl"))
    assert list(ds["text"]) == ["my document"]


@pytest.mark.parametrize(
    "kw, message",
    [
        (
            dict(source="stdlib", data_files="x.txt"),
            "data.source=stdlib does not read data.data_files (it reads none of them)",
        ),
        (
            dict(source="text", data_files="x.txt", path="json"),
            "data.source=text does not read data.path (it reads data.data_files)",
        ),
        (
            dict(source="json", data_files="x.json", name="sample-10BT"),
            "data.source=json does not read data.name (it reads data.data_files)",
        ),
    ],
)
def test_a_location_key_the_source_ignores_is_refused(kw, message):
    with pytest.raises(ValueError) as err:
        LMDataModule(**kw)
    assert str(err.value).startswith(message)


def test_each_source_kind_is_its_own_class_with_its_location_keys(jsonl_corpus):
    from nextok.data.sources import HubSource, LocalFilesSource, StdlibSource, make_source

    assert type(make_source("stdlib")) is StdlibSource
    assert type(make_source("hub", path="org/name")) is HubSource
    for kind in ("text", "json", "parquet"):
        src = make_source(kind, data_files=str(jsonl_corpus))
        assert type(src) is LocalFilesSource and src.kind == kind
    assert StdlibSource.location_keys == () and LocalFilesSource.location_keys == ("data_files",)
    train, val = make_source("json", data_files=str(jsonl_corpus), val_fraction=0.1).documents()
    assert len(train) + len(val) == 120 and len(val) == 12
