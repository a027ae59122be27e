import math

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from tokenizers import Tokenizer, models
from torch.utils.data import DataLoader, TensorDataset

from helpers.trainer import quiet_trainer
from nextok.checkpoint import load_checkpoint
from nextok.lit import LMModule, NonFiniteLossError
from nextok.optim import AdamWConfig, ScheduleConfig

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


def make_trainer(tmp_path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **{"max_steps": 4, "limit_val_batches": 2, **kw})


def _module(cfg, **kw):
    kw.setdefault("optim", AdamWConfig(lr=3e-3))
    kw.setdefault("schedule", ScheduleConfig(name="constant", warmup_steps=0))
    return LMModule(cfg, **kw)


def test_learns_and_logs(tmp_path, tiny_config):
    module = _module(tiny_config, optim=AdamWConfig(lr=1e-2))
    logger = CSVLogger(tmp_path, name="csv", version=0)
    trainer = make_trainer(
        tmp_path, max_steps=30, logger=logger, log_every_n_steps=1, val_check_interval=30
    )
    trainer.fit(module, datamodule=CountingData(n=128))
    logged = trainer.logged_metrics
    for key in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_seen",
        "val/loss",
        "val/ppl",
    ):
        assert key in logged, key
    assert float(logged["val/ppl"]) == pytest.approx(math.exp(float(logged["val/loss"])), rel=1e-5)
    assert float(logged["val/loss"]) < math.log(64) - 1.0  # far below uniform guessing
    assert module.tokens_seen == 30 * 4 * 16
    assert float(logged["train/tokens_seen"]) == 30 * 4 * 16


def test_gradient_accumulation_matches_large_batch(tmp_path, tiny_config):
    """4 micro-batches of 2 accumulated == one batch of 8 (mean loss over equal-size batches)."""
    a, b = _module(tiny_config), _module(tiny_config)
    torch.manual_seed(0)  # the model is initialised in configure_model, i.e. inside fit
    make_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
        a, datamodule=CountingData(batch_size=8)
    )
    torch.manual_seed(0)
    make_trainer(tmp_path, max_steps=1, limit_val_batches=0, accumulate_grad_batches=4).fit(
        b, datamodule=CountingData(batch_size=2)
    )
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=name)
    assert a.tokens_seen == b.tokens_seen == 8 * 16


def test_grad_clipping(tmp_path, tiny_config):
    module = _module(tiny_config, optim=AdamWConfig(lr=1e-3, grad_clip=1e-3))
    seen = []
    orig = module.on_before_optimizer_step

    def spy(optimizer):
        orig(optimizer)
        seen.append(
            torch.linalg.vector_norm(
                torch.stack(
                    [p.grad.norm() for p in module.model.parameters() if p.grad is not None]
                )
            ).item()
        )

    module.on_before_optimizer_step = spy
    make_trainer(tmp_path, max_steps=2, limit_val_batches=0, log_every_n_steps=1).fit(
        module, datamodule=CountingData()
    )
    assert seen and all(n <= 1e-3 * 1.001 for n in seen)
    assert float(module.trainer.logged_metrics["train/grad_norm"]) > 1e-3  # pre-clip norm logged


class _Poisoned(LMModule):
    """Loss becomes NaN at optimizer step 2."""

    def training_step(self, batch, batch_idx):
        if self.global_step == 2:
            with torch.no_grad():
                self.model.blocks[0].mlp.fc.weight[0, 0] = float("nan")
        return super().training_step(batch, batch_idx)


def test_nonfinite_loss_stops_naming_the_step(tmp_path, tiny_config):
    module = _Poisoned(tiny_config, on_nonfinite="stop")
    with pytest.raises(NonFiniteLossError, match="at step 2"):
        make_trainer(tmp_path, max_steps=5, limit_val_batches=0).fit(
            module, datamodule=CountingData()
        )


def test_nonfinite_loss_skip_drops_the_update(tmp_path, tiny_config):
    module = _Poisoned(tiny_config, on_nonfinite="skip")
    before: dict[str, torch.Tensor] = {}
    orig = module.on_before_optimizer_step

    def spy(optimizer):
        if module.global_step == 2:  # the poisoned step: snapshot before the (skipped) update
            before.update({n: p.detach().clone() for n, p in module.model.named_parameters()})
        orig(optimizer)

    module.on_before_optimizer_step = spy
    trainer = make_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=CountingData())
    assert trainer.global_step == 3 and before  # the run went on past the bad step
    for name, p in module.model.named_parameters():
        assert torch.allclose(p, before[name], equal_nan=True), f"{name} was updated"
    # a normal step does change the parameters (so the check above can fail)
    ok = _module(tiny_config)
    make_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(ok, datamodule=CountingData())
    snap = {n: p.detach().clone() for n, p in ok.model.named_parameters()}
    make_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(ok, datamodule=CountingData())
    assert not all(torch.equal(p, snap[n]) for n, p in ok.model.named_parameters())


def test_checkpoint_contract(tmp_path, tiny_config):
    """on_save_checkpoint writes what nextok.checkpoint.load_checkpoint needs."""
    # nextok's own tokenizers always hold <|endoftext|>: the EOS of a checkpoint that records no
    # special tokens (one whose tokenizer has no EOS at all is refused in one line: below)
    vocab = {f"t{i}": i for i in range(63)} | {"<|endoftext|>": 63}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    # what the run hands over comes in through the constructor
    module = _module(tiny_config, tokenizer=tokenizer, export_info={"init_from": "/src"})
    trainer = make_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=CountingData())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # plain containers only
    assert ckpt["nextok"]["tokens_seen"] == 2 * 4 * 16
    assert "data_config" not in ckpt["nextok"]  # only what the app handed over (below)
    assert ckpt["nextok"]["init_from"] == "/src"  # export info, for the model card
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_config
    assert loaded.tokenizer.get_vocab_size() == 64
    assert loaded.special is not None and loaded.special.eos == "<|endoftext|>"
    x = torch.arange(16)[None] % 64
    torch.testing.assert_close(loaded.model(x)[0], module.model.eval()(x)[0])
    no_eos = Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0"))
    ckpt["nextok"]["tokenizer_json"] = no_eos.to_str()
    torch.save(ckpt, tmp_path / "no_eos.ckpt")
    with pytest.raises(ValueError, match="records no special tokens and its tokenizer gives none"):
        load_checkpoint(tmp_path / "no_eos.ckpt")
    # the hyper-parameters rebuild the module
    again = LMModule.load_from_checkpoint(path, weights_only=False)
    assert again.model_config == tiny_config and again.optim_config == module.optim_config
    # the run's data config, set by the app, is recorded as given (nextok-eval's val split)
    module.data_config = {"source": "stdlib", "val_fraction": 0.05, "seed": 7}
    trainer.save_checkpoint(tmp_path / "d.ckpt")
    meta = torch.load(tmp_path / "d.ckpt", weights_only=True)["nextok"]
    assert meta["data_config"] == module.data_config
    assert load_checkpoint(tmp_path / "d.ckpt").meta["data_config"]["val_fraction"] == 0.05


def test_resume_with_other_model_config_is_a_clear_error(tmp_path, tiny_config):
    module = _module(tiny_config)
    trainer = make_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=CountingData())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    other = _module(type(tiny_config)(**{**tiny_config.to_dict(), "n_layer": 3}))
    with pytest.raises(ValueError, match="n_layer"):
        make_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(
            other, datamodule=CountingData(), ckpt_path=tmp_path / "a.ckpt", weights_only=False
        )


def test_resume_on_other_data_is_a_clear_error(tmp_path, tiny_config):
    module = _module(tiny_config)
    module.data_config = {"source": "text", "data_files": "notes/", "num_workers": 0}
    trainer = make_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=CountingData())
    trainer.save_checkpoint(tmp_path / "a.ckpt")

    def resume(data_config):
        other = _module(tiny_config)
        other.data_config = data_config
        make_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(
            other, datamodule=CountingData(), ckpt_path=tmp_path / "a.ckpt", weights_only=False
        )

    resume({"source": "text", "data_files": "notes/", "num_workers": 2})  # machine-local: fine
    with pytest.raises(
        ValueError, match=r"^data.data_files=None differs from the data the checkpoint"
    ):
        resume({"source": "stdlib", "data_files": None, "num_workers": 0})


def test_bad_policy():
    from nextok.model import ModelConfig

    with pytest.raises(ValueError, match="on_nonfinite"):
        LMModule(
            ModelConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, d_model=8),
            on_nonfinite="retry",
        )
