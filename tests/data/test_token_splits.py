"""The data module's collaborators work from their own narrow inputs, without a data module."""

from __future__ import annotations

import numpy as np

from nextok.data import LMDataModule, train_bpe
from nextok.data.loaders import LoaderFactory
from nextok.data.position import ResumableDataLoader
from nextok.data.sources import make_source
from nextok.data.tokenization.encoder import TokenEncoder
from nextok.data.tokens import TokenSplits


def test_token_splits_and_loaders_from_a_source_and_an_encoder(tmp_path, jsonl_corpus, docs):
    tok = train_bpe(docs, 300)
    (tmp_path / "tok.json").write_text(tok.to_str())
    source = make_source("json", data_files=str(jsonl_corpus), val_fraction=0.1, seed=7)
    splits = TokenSplits(source, TokenEncoder(tok, eos_id=0), block_size=16)
    train = splits.load("train")
    dm = LMDataModule(
        source="json",
        data_files=str(jsonl_corpus),
        val_fraction=0.1,
        seed=7,
        tokenizer_path=str(tmp_path / "tok.json"),
        block_size=16,
        batch_size=4,
    )
    dm.setup("fit")
    assert np.array_equal(train, dm.train_tokens)  # the data module hands on, adds nothing
    assert splits.key() == dm.cache_key()
    factory = LoaderFactory(batch_size=4, val_batch_size=8, seed=7)
    loader = factory.train_loader(dm.train_dataset(), rank=0, world_size=1)
    assert isinstance(loader, ResumableDataLoader)
    assert [x.tolist() for x, _ in loader] == [x.tolist() for x, _ in dm.train_dataloader()]
