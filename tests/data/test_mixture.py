"""Data mixtures: the schedule, measured proportions, rank x worker sharding, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nextok.data import MixtureDataModule
from nextok.data.mixture.schedule import MixtureSchedule
from nextok.lit.callbacks.mixture_tokens import MixtureTokens

LOWER = "alpha bravo charlie delta echo foxtrot golf hotel".split()
UPPER = "ZULU YANKEE XRAY WHISKEY VICTOR UNIFORM TANGO SIERRA".split()


def test_schedule_counts_track_weights_and_locate_agrees():
    w = [0.5, 0.3, 0.2]
    s = MixtureSchedule(w, seed=3, chunk=64)
    n = 64 * 20 + 17
    seen = np.zeros(3, dtype=np.int64)
    for g in range(n):
        src, k = s.locate(g)
        assert k == seen[src]  # the k-th block of a source is drawn in order, none skipped
        seen[src] += 1
    assert np.array_equal(seen, s.counts(n))
    for c in range(1, 21):  # exact to within one block at every chunk boundary
        assert np.all(np.abs(s.counts(64 * c) - np.array(w) * 64 * c) < 1)
    # deterministic from the seed; another seed orders differently
    assert [MixtureSchedule(w, 3, 64).locate(g) for g in range(200)] == [
        s.locate(g) for g in range(200)
    ]
    assert [MixtureSchedule(w, 4, 64).locate(g)[0] for g in range(200)] != [
        s.locate(g)[0] for g in range(200)
    ]
    # a tiny weight still gets its share (the chunk grows to hold it)
    t = MixtureSchedule([0.999, 0.001], seed=0, chunk=8)
    assert t.counts(10_000)[1] == pytest.approx(10, abs=1)


def _docs(words, n, seed):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(20, 80)))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mix")
    a, b = root / "lower.jsonl", root / "upper.jsonl"
    a.write_text("".join(json.dumps({"text": d}) + "\n" for d in _docs(LOWER, 60, 0)))
    b.write_text("".join(json.dumps({"text": d}) + "\n" for d in _docs(UPPER, 60, 1)))
    return a, b


def _dm(tmp_path: Path, corpora, num_workers=0, weights=(0.7, 0.3), batch_size=8):
    a, b = corpora
    return MixtureDataModule(
        sources={
            "lower": {"weight": weights[0], "source": "json", "data_files": str(a)},
            "upper": {"weight": weights[1], "source": "json", "data_files": str(b)},
        },
        vocab_size=300,
        block_size=16,
        batch_size=batch_size,
        num_workers=num_workers,
        run_dir=str(tmp_path / "run"),
        val_fraction=0.1,
        seed=7,
        mixture_chunk=64,
    )


class Recorder(L.LightningModule):
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


def _trainer(max_steps, callbacks=(), root=None, log_every=1):
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        callbacks=list(callbacks),
        default_root_dir=root,
        log_every_n_steps=log_every,
    )


def _source_of_block(tok, block: torch.Tensor) -> str:
    """Measured from the content: a block is packed from one source's documents only."""
    text = tok.decode(block.tolist(), skip_special_tokens=True)
    has_upper = any(c.isupper() for c in text)
    has_lower = any(c.islower() for c in text)
    assert has_upper != has_lower, f"a block mixes sources: {text!r}"
    return "upper" if has_upper else "lower"


def test_measured_proportions_match_weights_and_logged_tokens(tmp_path, corpora):
    dm = _dm(tmp_path, corpora)
    rec = Recorder()
    steps = 300  # 2,400 blocks: several nominal epochs of the small sources
    trainer = _trainer(steps, [MixtureTokens()])
    trainer.fit(rec, datamodule=dm)
    blocks = torch.cat(rec.seen)
    names = [_source_of_block(dm.tokenizer, b) for b in blocks]
    measured = {n: names.count(n) / len(names) for n in ("lower", "upper")}
    assert measured["lower"] == pytest.approx(0.7, abs=0.01)
    assert measured["upper"] == pytest.approx(0.3, abs=0.01)
    # the logged train/tokens/<name> equal the tokens measured in the batches
    for n in ("lower", "upper"):
        logged = float(trainer.callback_metrics[f"train/tokens/{n}"])
        assert logged == names.count(n) * 16, n
    # more than one nominal epoch was consumed, so the epoch bookkeeping is exercised
    assert trainer.current_epoch >= 1


def test_ranks_and_workers_partition_the_positions(tmp_path, corpora):
    dm = _dm(tmp_path, corpora, num_workers=2)
    dm.prepare_data()
    dm.setup("fit")
    single = torch.cat([x for x, _ in dm.train_dataloader(rank=0, world_size=1)])
    r0 = torch.cat([x for x, _ in dm.train_dataloader(rank=0, world_size=2)])
    r1 = torch.cat([x for x, _ in dm.train_dataloader(rank=1, world_size=2)])
    n = min(len(r0), len(r1))
    # rank r reads global positions r, r + 2, ...: interleaving them gives the 1-process stream
    inter = torch.stack([r0[:n], r1[:n]], dim=1).reshape(2 * n, -1)
    assert torch.equal(inter, single[: 2 * n])


@pytest.mark.parametrize("num_workers", [2])
def test_resume_with_workers_is_exact(tmp_path, corpora, num_workers):
    dm = _dm(tmp_path, corpora, num_workers, batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    n_steps = per_epoch + 5
    ref = Recorder()
    _trainer(n_steps).fit(ref, datamodule=_dm(tmp_path, corpora, num_workers, batch_size=16))
    for k in (3, per_epoch):  # mid-epoch and exactly at the epoch end
        ckpt_dir = tmp_path / f"ck{k}"
        first = Recorder()
        cb = ModelCheckpoint(
            dirpath=ckpt_dir, every_n_train_steps=k, save_top_k=-1, filename="s{step}"
        )
        _trainer(k, [cb], tmp_path).fit(
            first, datamodule=_dm(tmp_path, corpora, num_workers, batch_size=16)
        )
        (ckpt,) = sorted(ckpt_dir.glob("*.ckpt"))
        second = Recorder()
        dm2 = _dm(tmp_path, corpora, num_workers, batch_size=16)
        _trainer(n_steps).fit(second, datamodule=dm2, ckpt_path=ckpt)
        seen = first.seen + second.seen
        assert len(seen) == n_steps
        for i, (a, b) in enumerate(zip(seen, ref.seen)):
            assert torch.equal(a, b), f"resume after {k}: batch {i} differs"


def test_per_source_validation_loaders(tmp_path, corpora):
    dm = _dm(tmp_path, corpora)
    dm.prepare_data()
    dm.setup("validate")
    loaders = dm.val_dataloader()
    assert dm.val_names == ["lower", "upper"] and len(loaders) == 2
    for name, loader in zip(dm.val_names, loaders):
        for x, _ in loader:
            for row in x:
                assert _source_of_block(dm.tokenizer, row) == name


def test_bad_mixture_config_is_one_line(tmp_path, corpora):
    a, _ = corpora
    with pytest.raises(ValueError, match=r"data.sources.a.weight must be a positive"):
        MixtureDataModule(sources={"a": {"weight": 0, "source": "json", "data_files": str(a)}})
    with pytest.raises(ValueError, match=r"data.sources.a: unknown key\(s\) \['wieght'\]"):
        MixtureDataModule(sources={"a": {"weight": 1, "wieght": 2}})
    with pytest.raises(ValueError, match=r"data.sources.a.weight is required"):
        MixtureDataModule(sources={"a": {"source": "stdlib"}})
    with pytest.raises(
        ValueError, match=r"^data.sources.b: data.source=stdlib does not read data.pa"
    ):
        MixtureDataModule(
            sources={"a": {"weight": 1}, "b": {"weight": 1, "source": "stdlib", "path": "x"}}
        )


def _stream_dm(tmp_path: Path, corpora, num_workers=2, batch_size=4):
    """A streamed source mixed with a map-style one: the mixture is an endless stream."""
    a, b = corpora
    return MixtureDataModule(
        sources={
            "lower": {"weight": 0.7, "source": "json", "data_files": str(a), "streaming": True},
            "upper": {"weight": 0.3, "source": "json", "data_files": str(b)},
        },
        vocab_size=300,
        block_size=16,
        batch_size=batch_size,
        num_workers=num_workers,
        run_dir=str(tmp_path / "run"),
        val_fraction=0.1,
        seed=7,
        mixture_chunk=64,
        shuffle_buffer=50,
    )


def test_streaming_mixture_proportions_and_exact_resume_with_workers(tmp_path, corpora):
    n_steps = 150
    ref = Recorder()
    trainer = _trainer(n_steps, [MixtureTokens()])
    trainer.fit(ref, datamodule=_stream_dm(tmp_path, corpora))
    dm = trainer.datamodule
    assert dm.is_streaming
    names = [_source_of_block(dm.tokenizer, b) for b in torch.cat(ref.seen)]
    assert names.count("lower") / len(names) == pytest.approx(0.7, abs=0.01)
    assert float(trainer.callback_metrics["train/tokens/upper"]) == names.count("upper") * 16
    # per-source validation works for the streamed source too
    loaders = dm.val_dataloader()
    assert [len(list(x)) > 0 for x in loaders] == [True, True]
    # resume after k batches (k odd: the 2 workers swap streams) continues bitwise
    k = 37
    first = Recorder()
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=k, save_top_k=-1)
    _trainer(k, [cb], tmp_path).fit(first, datamodule=_stream_dm(tmp_path, corpora))
    (ckpt,) = sorted((tmp_path / "ck").glob("*.ckpt"))
    second = Recorder()
    _trainer(n_steps).fit(second, datamodule=_stream_dm(tmp_path, corpora), ckpt_path=ckpt)
    seen = first.seen + second.seen
    assert len(seen) == n_steps
    for i, (x, y) in enumerate(zip(seen, ref.seen)):
        assert torch.equal(x, y), f"streaming mixture resume after {k}: batch {i} differs"
