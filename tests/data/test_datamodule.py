"""The default data path end to end: stdlib sources -> BPE (saved to run_dir) -> (x, y) batches."""

from __future__ import annotations

import pytest
import torch

from nextok.data import LMDataModule


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    dm = LMDataModule(
        run_dir=str(tmp_path_factory.mktemp("run")),
        vocab_size=2048,
        tokenizer_train_bytes=1_000_000,
        block_size=64,
        batch_size=8,
        max_val_batches=3,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_stdlib_default_end_to_end(dm):
    assert dm.run_tokenizer.file.exists() and dm.vocab_size == 2048 and dm.eot_id == 0
    train, val = dm.documents()
    train_paths, val_paths = set(train["path"]), set(val["path"])
    assert len(val_paths) == round(0.01 * (len(train_paths) + len(val_paths)))
    assert not train_paths & val_paths  # held-out files never appear in training
    loader = dm.train_dataloader()
    x, y = next(iter(loader))
    assert x.shape == y.shape == (8, 64) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < dm.vocab_size
    text = dm.tokenizer.decode(x[0].tolist() + y[0, -1:].tolist())
    assert len(text) > 64  # BPE: several characters per token of Python source


def test_lightning_can_reiterate_the_train_loader_for_more_epochs(dm):
    loader = dm.train_dataloader()
    sampler = loader.sampler

    def epoch(e: int) -> tuple[list[int], list[torch.Tensor]]:
        sampler.set_epoch(e)  # what Lightning does before each epoch
        first = [x for _, (x, _) in zip(range(20), loader)]
        return list(sampler), first

    (i0, b0), (i1, b1), (i0_again, b0_again) = epoch(0), epoch(1), epoch(0)
    assert len(i0) == len(dm.train_dataset()) and sorted(i0) == sorted(
        i1
    )  # every block, each epoch
    assert i0 != i1 and not torch.equal(b0[0], b1[0])  # reshuffled per epoch
    assert i0 == i0_again and all(torch.equal(p, q) for p, q in zip(b0, b0_again))  # deterministic
    assert torch.equal(b0[0][0], dm.train_dataset()[i0[0]][0])


def test_validation_is_finite_deterministic_and_capped(dm):
    a = [x.clone() for x, _ in dm.val_dataloader()]
    b = [x.clone() for x, _ in dm.val_dataloader()]
    assert 0 < len(a) <= 3 and all(torch.equal(p, q) for p, q in zip(a, b))
