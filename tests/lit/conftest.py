"""A tiny synthetic LightningDataModule, so LMModule can be tested without the data pipeline."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nextok.model import ModelConfig

VOCAB, BLOCK = 64, 16


class CountingData(L.LightningDataModule):
    """Sequences ``t, t+1, t+2, ...`` (mod vocab): next-token prediction is easily learnable."""

    def __init__(self, n: int = 64, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        seq = (start + torch.arange(BLOCK + 1)) % VOCAB
        self.x, self.y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[:8], self.y[:8]), batch_size=self.batch_size)


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=2, d_model=32)


def make_trainer(tmp_path, **kw) -> L.Trainer:
    args = dict(
        accelerator="cpu", devices=1, max_steps=4, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=str(tmp_path), limit_val_batches=2,
    )
    args.update(kw)
    return L.Trainer(**args)
