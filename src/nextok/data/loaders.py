"""Samplers, streams and loaders: the assembly behind a data module's ``*_dataloader`` hooks,
shared by the single-source and the mixture data module (``datamodule`` below is either).

Training draws blocks in the module's ``sampler_class`` order (shuffled per epoch, sharded per
rank, resumable mid-epoch) or from an endless stream; the loader is a
:class:`~nextok.data.position.ResumableDataLoader` so its position lands in checkpoints.
Validation reads the same blocks every time, in order: a sequential :class:`BlockSampler`
(trimmed to equal per-rank counts under data parallelism) over a map-style split, or the first
blocks of a stream; ``max_val_batches`` caps either, per rank.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset

from nextok.data.blocks import BlockSampler
from nextok.data.position import ResumableDataLoader
from nextok.data.streaming import StreamingBlockDataset


def train_sampler(
    datamodule: Any, n_blocks: int, rank: int, world_size: int, even: bool | None = None
) -> BlockSampler:
    """This rank's training block order, at the resume position if a checkpoint set one.
    ``even`` (default: when ``world_size > 1``) trims the ranks' shards to equal length."""
    trainer = datamodule.trainer
    sampler = datamodule.sampler_class(
        n_blocks,
        rank=rank,
        world_size=world_size,
        shuffle=datamodule.shuffle,
        seed=datamodule.seed,
        even=world_size > 1 if even is None else even,
        epoch=trainer.current_epoch if trainer is not None else 0,
    )
    if datamodule.resume_position is not None:
        epoch, batches = datamodule.resume_position
        sampler.set_epoch(epoch)
        sampler.set_resume(epoch, batches * datamodule.batch_size)
    return sampler


def block_stream(datamodule: Any, which: str, rank: int, world_size: int) -> StreamingBlockDataset:
    """The on-the-fly block stream of one split (``streaming: true`` without a cache)."""
    train, val = datamodule.documents()
    is_train = which == "train"
    dm = datamodule
    ds = StreamingBlockDataset(
        train if is_train else val,
        dm.require_tokenizer(),
        dm.block_size,
        text_column=dm.text_column,
        rank=rank,
        world_size=world_size,
        batch_size=dm.batch_size if is_train else dm.val_batch_size,
        shuffle_buffer=dm.shuffle_buffer if (is_train and dm.shuffle) else 0,
        seed=dm.seed,
        infinite=is_train,
        encode_batch_docs=dm.encode_batch_docs,
        eos_id=dm.eot_id,
        bos_id=dm.bos_id,
    )
    if is_train and dm.resume_position is not None:  # one endless epoch: skip consumed batches
        ds.skip_batches = dm.resume_position[1]
    return ds


def train_loader(
    datamodule: Any, rank: int, world_size: int, even: bool | None = None
) -> ResumableDataLoader:
    """Training batches for one rank: a stream, or blocks in the sampler's order."""
    dm = datamodule
    kw = dict(batch_size=dm.batch_size, num_workers=dm.num_workers, pin_memory=dm.pin_memory)
    if dm.is_streaming:
        return ResumableDataLoader(
            dm, dm.streaming_dataset("train", rank, world_size), drop_last=True, **kw
        )
    ds = dm.train_dataset()
    sampler = train_sampler(dm, len(ds), rank, world_size, even)
    if len(sampler) < dm.batch_size and dm.drop_last:
        raise ValueError(
            f"training split has {len(sampler)} blocks per rank, fewer than one batch "
            f"(batch_size={dm.batch_size}); use more data or smaller block_size/batch_size"
        )
    return ResumableDataLoader(
        dm,
        ds,
        sampler=sampler,
        drop_last=dm.drop_last,
        persistent_workers=dm.num_workers > 0,
        **kw,
    )


def val_loader(datamodule: Any, rank: int, world_size: int) -> DataLoader:
    """This rank's validation batches of a single-source data module."""
    dm = datamodule
    if dm.is_streaming:
        stream = dm.streaming_dataset("val", rank, world_size)
        return stream_val_loader(stream, dm.val_batch_size, dm.max_val_batches, dm.pin_memory)
    return split_val_loader(
        dm.val_dataset(), rank, world_size, dm.val_batch_size, dm.max_val_batches, dm.pin_memory
    )


def split_val_loader(
    ds: Dataset,
    rank: int,
    world_size: int,
    batch_size: int,
    max_val_batches: int | None,
    pin_memory: bool,
) -> DataLoader:
    """Sequential batches of this rank's share of the first ``max_val_batches`` per rank."""
    n = len(ds)
    if max_val_batches is not None:
        n = min(n, max_val_batches * batch_size * world_size)
    sampler = BlockSampler(n, rank=rank, world_size=world_size, shuffle=False, even=world_size > 1)
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=0, pin_memory=pin_memory
    )


def stream_val_loader(
    stream: StreamingBlockDataset,
    batch_size: int,
    max_val_batches: int | None,
    pin_memory: bool,
) -> DataLoader:
    """The first ``max_val_batches`` batches of this rank's validation stream."""
    if max_val_batches is not None:
        stream.max_blocks = max_val_batches * batch_size
    return DataLoader(stream, batch_size=batch_size, num_workers=0, pin_memory=pin_memory)
