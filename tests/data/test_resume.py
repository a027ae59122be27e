"""Exact resume with a real Lightning Trainer: k steps + resume to N == N uninterrupted steps."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nextok.data import LMDataModule


class Recorder(L.LightningModule):
    """Trivial module that records every training batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(torch.cat([x, y[:, -1:]], dim=1).clone())
        return (self.w * x.float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _dm(tmp_path: Path, corpus: Path, num_workers: int) -> LMDataModule:
    return LMDataModule(
        source="json",
        data_files=str(corpus),
        vocab_size=300,
        block_size=16,
        batch_size=4,
        num_workers=num_workers,
        run_dir=str(tmp_path / "run"),
        val_fraction=0.1,
        seed=7,
    )


def _trainer(max_steps: int, callbacks=(), root: Path | None = None) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
        default_root_dir=root,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from helpers.corpora import make_docs, write_jsonl

    # few docs -> a short epoch, so N steps cross epoch boundaries
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", make_docs(25, seed=3))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_and_at_epoch_end_is_exact(tmp_path, corpus, num_workers):
    dm = _dm(tmp_path, corpus, num_workers)
    dm.prepare_data()
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    assert per_epoch >= 4, per_epoch
    n_steps = 2 * per_epoch + 3  # crosses two epoch boundaries

    ref = Recorder()
    _trainer(n_steps).fit(ref, datamodule=_dm(tmp_path, corpus, num_workers))
    assert len(ref.seen) == n_steps
    # epochs are reshuffled: epoch 1 is not a repeat of epoch 0
    assert not torch.equal(
        torch.cat(ref.seen[:per_epoch]), torch.cat(ref.seen[per_epoch : 2 * per_epoch])
    )

    # k = mid-epoch 0, exactly the end of epoch 0, mid-epoch 1
    for k in (2, per_epoch, per_epoch + 2):
        ckpt_dir = tmp_path / f"ckpt{k}"
        first = Recorder()
        cb = ModelCheckpoint(
            dirpath=ckpt_dir, every_n_train_steps=k, save_top_k=-1, filename="step{step}"
        )
        _trainer(k, [cb], tmp_path).fit(first, datamodule=_dm(tmp_path, corpus, num_workers))
        (ckpt,) = sorted(ckpt_dir.glob("*.ckpt"))
        second = Recorder()
        _trainer(n_steps).fit(second, datamodule=_dm(tmp_path, corpus, num_workers), ckpt_path=ckpt)
        seen = first.seen + second.seen
        assert len(seen) == n_steps, (k, len(first.seen), len(second.seen))
        for i, (a, b) in enumerate(zip(seen, ref.seen)):
            assert torch.equal(a, b), f"resume after {k} steps: batch {i} differs"


def _stream_kw(tmp_path, corpus, **extra) -> dict:
    """A small streamed JSON corpus read by 2 workers."""
    return dict(
        source="json",
        data_files=str(corpus),
        streaming=True,
        vocab_size=300,
        block_size=16,
        batch_size=3,
        num_workers=2,
        run_dir=str(tmp_path / "run"),
        **extra,
    )


def test_streaming_resume_replays_to_the_exact_next_batch(tmp_path, corpus):
    """Streaming (iterable) path with 2 workers: a resumed loader continues at batch k."""
    kw = _stream_kw(tmp_path, corpus, shuffle_buffer=8, seed=2)
    dm = LMDataModule(**kw)
    dm.prepare_data()
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    ref = [next(it)[0] for _ in range(40)]  # crosses several internal epochs of each shard
    for k in (1, 7, 30):
        dm2 = LMDataModule(**kw)
        dm2.setup("fit")
        loader = dm2.train_dataloader()
        loader.load_state_dict({"epoch": 0, "batches": k, "batch_size": 3})
        it = iter(loader)
        for i in range(k, 40):
            assert torch.equal(next(it)[0], ref[i]), (k, i)


def test_streaming_resume_with_trainer(tmp_path, corpus):
    kw = _stream_kw(tmp_path, corpus, val_fraction=0.1)
    ref = Recorder()
    _trainer(12).fit(ref, datamodule=LMDataModule(**kw))
    first = Recorder()
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=5, save_top_k=-1)
    _trainer(5, [cb], tmp_path).fit(first, datamodule=LMDataModule(**kw))
    (ckpt,) = (tmp_path / "ck").glob("*.ckpt")
    second = Recorder()
    _trainer(12).fit(second, datamodule=LMDataModule(**kw), ckpt_path=ckpt)
    seen = first.seen + second.seen
    assert len(seen) == 12 and all(torch.equal(a, b) for a, b in zip(seen, ref.seen))
