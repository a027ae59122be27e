"""``LoaderFactory``: DataLoaders of block datasets and streams, from the loader settings alone.

Training draws blocks in ``sampler_class`` order (shuffled per epoch, sharded per rank,
resumable mid-epoch) or from an endless stream; the loader is a
:class:`~nextok.data.position.ResumableDataLoader`, so its position lands in checkpoints.
Validation reads the same blocks every time, in order: a sequential :class:`BlockSampler`
(trimmed to equal per-rank counts under data parallelism) over a map-style split, or the first
blocks of a stream; ``max_val_batches`` caps either, per rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset

from nextok.data.blocks import BlockSampler
from nextok.data.position import ResumableDataLoader
from nextok.data.sources.split import Documents
from nextok.data.streaming import StreamingBlockDataset
from nextok.data.tokenization.encoder import TokenEncoder


@dataclass
class LoaderFactory:
    """The ``data.*`` loader settings; each method builds one loader for one rank."""

    batch_size: int
    val_batch_size: int
    num_workers: int = 0
    pin_memory: bool = False
    shuffle: bool = True
    seed: int = 1337
    drop_last: bool = True
    max_val_batches: int | None = None
    sampler_class: type[BlockSampler] = BlockSampler
    shuffle_buffer: int = 10_000

    def block_stream(
        self,
        documents: Documents,
        text_column: str,
        encoder: TokenEncoder,
        block_size: int,
        train: bool,
        rank: int,
        world_size: int,
    ) -> StreamingBlockDataset:
        """The on-the-fly block stream of one split for one rank (training: endless, shuffled
        through ``shuffle_buffer`` when ``shuffle``)."""
        return StreamingBlockDataset(
            documents,
            encoder.tokenizer,
            block_size,
            text_column=text_column,
            rank=rank,
            world_size=world_size,
            batch_size=self.batch_size if train else self.val_batch_size,
            shuffle_buffer=self.shuffle_buffer if (train and self.shuffle) else 0,
            seed=self.seed,
            infinite=train,
            encode_batch_docs=encoder.batch_docs,
            eos_id=encoder.eos_id,
            bos_id=encoder.bos_id,
        )

    def train_sampler(
        self, n_blocks: int, rank: int, world_size: int, even: bool | None = None, epoch: int = 0
    ) -> BlockSampler:
        """This rank's training block order. ``even`` (default: when ``world_size > 1``) trims
        the ranks' shards to equal length."""
        return self.sampler_class(
            n_blocks,
            rank=rank,
            world_size=world_size,
            shuffle=self.shuffle,
            seed=self.seed,
            even=world_size > 1 if even is None else even,
            epoch=epoch,
        )

    def train_loader(
        self, ds: Dataset, rank: int, world_size: int, even: bool | None = None, epoch: int = 0
    ) -> ResumableDataLoader:
        """Training batches of a map-style block dataset, in the sampler's order."""
        sampler = self.train_sampler(len(ds), rank, world_size, even, epoch)
        if len(sampler) < self.batch_size and self.drop_last:
            raise ValueError(
                f"training split has {len(sampler)} blocks per rank, fewer than one batch "
                f"(batch_size={self.batch_size}); use more data or smaller block_size/batch_size"
            )
        return ResumableDataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def stream_train_loader(self, stream: Dataset) -> ResumableDataLoader:
        """Training batches of an endless stream (one source's or a mixture's)."""
        return ResumableDataLoader(
            stream,
            batch_size=self.batch_size,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def val_loader(self, ds: Dataset, rank: int, world_size: int) -> DataLoader:
        """Sequential batches of this rank's share of the first ``max_val_batches`` per rank."""
        n, bs = len(ds), self.val_batch_size
        if self.max_val_batches is not None:
            n = min(n, self.max_val_batches * bs * world_size)
        sampler = BlockSampler(
            n, rank=rank, world_size=world_size, shuffle=False, even=world_size > 1
        )
        return DataLoader(ds, batch_size=bs, sampler=sampler, pin_memory=self.pin_memory)

    def stream_val_loader(self, stream: StreamingBlockDataset) -> DataLoader:
        """The first ``max_val_batches`` batches of this rank's validation stream."""
        if self.max_val_batches is not None:
            stream.max_blocks = self.max_val_batches * self.val_batch_size
        return DataLoader(stream, batch_size=self.val_batch_size, pin_memory=self.pin_memory)
