"""Streaming blocks from an iterable (HF streaming) dataset: sharded, infinite, replayable.

Used when the corpus is not materialised (``streaming: true`` without a cache). Each
(rank, DataLoader worker) pair reads a disjoint document shard via
``datasets.distributed.split_dataset_by_node`` (whole files when the file count divides, else
every n-th document) and packs its own documents into blocks. The stream cycles over epochs
forever (epoch ``e`` reshuffled from ``seed + e``), so DDP ranks never run out at different
times; train with ``max_steps``.

Resume is a deterministic replay: a run resumed after ``k`` batches re-reads and skips this rank's
first ``k`` batches (cheap next to training; nothing is repeated or lost).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from tokenizers import Tokenizer
from torch.utils.data import IterableDataset, get_worker_info

from nextok.data.packing import encode_stream, pack_blocks, token_dtype
from nextok.special_tokens import EOT


def worker_skip(batches_consumed: int, worker_id: int, num_workers: int) -> int:
    """Batches worker ``worker_id`` produced among the rank's first ``batches_consumed``.

    A DataLoader over an IterableDataset takes batches from its workers round-robin (0, 1, ...,
    W-1, 0, ...); our streams are infinite, so no worker ever drops out of the rotation.
    """
    if batches_consumed <= worker_id:
        return 0
    return (batches_consumed - worker_id + num_workers - 1) // num_workers


class StreamingBlockDataset(IterableDataset):
    """Yields ``(x, y)`` from packed blocks of this rank's and worker's document shard."""

    def __init__(
        self,
        docs: datasets.IterableDataset | datasets.Dataset,
        tokenizer: Tokenizer,
        block_size: int,
        *,
        text_column: str = "text",
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        shuffle_buffer: int = 0,
        seed: int = 1337,
        infinite: bool = True,
        encode_batch_docs: int = 256,
        max_blocks: int | None = None,
        eos_id: int | None = None,
        bos_id: int | None = None,
    ) -> None:
        if isinstance(docs, datasets.Dataset):
            docs = docs.to_iterable_dataset()
        self.docs = docs
        self.tokenizer_json = tokenizer.to_str()  # picklable for worker processes
        self._tokenizer: Tokenizer | None = tokenizer
        self.block_size = block_size
        self.text_column = text_column
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.infinite = infinite
        self.encode_batch_docs = encode_batch_docs
        self.max_blocks = max_blocks  # cap per (rank, worker) stream, e.g. cheap validation
        # the document separator (default: nextok's EOT) and an optional BOS
        self.eos_id = tokenizer.token_to_id(EOT) if eos_id is None else eos_id
        self.bos_id = bos_id
        self.start_epoch = 0
        self.skip_batches = 0  # batches this rank already consumed (resume)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tokenizer"] = None
        return state

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return self._tokenizer

    def shard_docs(self, epoch: int, shard: int, num_shards: int) -> datasets.IterableDataset:
        docs = self.docs
        if self.shuffle_buffer > 0:
            docs = docs.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            docs.set_epoch(epoch)
        return (
            split_dataset_by_node(docs, rank=shard, world_size=num_shards)
            if num_shards > 1
            else docs
        )

    def epoch_blocks(self, epoch: int, shard: int, num_shards: int) -> Iterator[np.ndarray]:
        """One pass over one shard's documents, packed into blocks of ``block_size + 1``."""
        tok = self.tokenizer
        dtype = token_dtype(tok.get_vocab_size())
        docs = self.shard_docs(epoch, shard, num_shards)
        # .iter() (not iter()) so `datasets` does not split again by DataLoader worker
        texts = (
            [t or "" for t in b[self.text_column]]
            for b in docs.iter(batch_size=self.encode_batch_docs)
        )
        chunks = encode_stream(tok, texts, self.eos_id, dtype, self.bos_id)
        yield from pack_blocks(chunks, self.block_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and nw > 1:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # A resumed DataLoader polls worker 0 first, but batch k belongs to stream k % nw: worker
        # `wid` takes over the stream ("virtual worker") that is due at its turn.
        vid = (wid + self.skip_batches) % nw
        shard, num_shards = self.rank * nw + vid, self.world_size * nw
        skip = worker_skip(self.skip_batches, vid, nw) * self.batch_size
        epoch = self.start_epoch
        left = self.max_blocks
        while True:
            produced = 0
            for block in self.epoch_blocks(epoch, shard, num_shards):
                produced += 1
                if skip:
                    skip -= 1
                    continue
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                t = torch.from_numpy(block)
                yield t[:-1], t[1:]
            if not self.infinite:
                return
            if produced == 0:
                raise ValueError(
                    f"data shard {shard}/{num_shards} (rank {self.rank}, worker {vid}) has no complete "
                    f"block of {self.block_size + 1} tokens; use fewer workers/ranks or a smaller block_size"
                )
            epoch += 1
