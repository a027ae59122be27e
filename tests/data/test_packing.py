"""Packing: documents + <|endoftext|> -> consecutive blocks of block_size+1 -> shifted (x, y)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nextok.data import LMDataModule, TokenBlockDataset, encode_documents, pack_blocks, train_bpe
from nextok.data.packing import token_dtype


@pytest.fixture(scope="module")
def tok(docs):
    return train_bpe(docs, vocab_size=300)


def test_encode_documents_keeps_order_and_boundaries(tok, docs):
    ids = encode_documents(tok, docs, eot=0, dtype=np.dtype(np.uint16))
    assert ids.dtype == np.uint16 and ids[-1] == 0
    pieces = np.split(ids, np.flatnonzero(ids == 0) + 1)[:-1]
    assert [tok.decode(p[:-1].tolist()) for p in pieces] == docs


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_pack_blocks_drops_only_the_final_partial_block(block_size):
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 300, size=1000)
    # arbitrary chunking must not change the blocks
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=37, replace=False))
    chunks = np.split(stream, cuts)
    blocks = list(pack_blocks(chunks, block_size))
    n = len(stream) // (block_size + 1)
    assert len(blocks) == n
    assert all(len(b) == block_size + 1 for b in blocks)
    assert np.array_equal(np.concatenate(blocks), stream[: n * (block_size + 1)])
    assert len(stream) - n * (block_size + 1) < block_size + 1  # only a partial block is left over


def test_block_is_shifted_into_x_and_y():
    x, y = TokenBlockDataset(np.arange(10, dtype=np.uint16), block_size=9)[0]
    assert (
        x.dtype == torch.int64
        and torch.equal(x, torch.arange(9))
        and torch.equal(y, torch.arange(1, 10))
    )


def test_token_dtype():
    assert token_dtype(4096) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(200_000) == np.uint32


def test_every_training_batch_is_a_shifted_block(tmp_path, jsonl_corpus):
    dm = LMDataModule(
        source="json",
        data_files=str(jsonl_corpus),
        vocab_size=300,
        block_size=16,
        batch_size=4,
        shuffle=False,
        drop_last=False,
        run_dir=str(tmp_path),
    )
    dm.prepare_data()
    dm.setup("fit")
    tokens = np.asarray(dm.train_tokens, dtype=np.int64)
    rows = []
    for x, y in dm.train_dataloader():
        assert x.dtype == y.dtype == torch.int64 and x.shape[1] == y.shape[1] == 16
        assert torch.equal(x[:, 1:], y[:, :-1])
        rows.append(torch.cat([x, y[:, -1:]], dim=1))
    blocks = torch.cat(rows).numpy()
    n = len(tokens) // 17
    # sequential order = the packed token stream, nothing dropped but the final partial block
    assert np.array_equal(blocks.reshape(-1), tokens[: n * 17])
    # the token stream is the training documents, in order, each followed by <|endoftext|>
    train_docs, _ = dm.documents()
    expected = encode_documents(
        dm.tokenizer, list(train_docs["text"]), dm.eot_id, np.dtype(np.uint16)
    )
    assert np.array_equal(tokens, expected)
    # and the same blocks come out of the on-the-fly packer
    assert np.array_equal(np.stack(list(pack_blocks([expected], 16))), blocks)
    x, y = next(iter(dm.val_dataloader()))
    assert torch.equal(x[:, 1:], y[:, :-1])
