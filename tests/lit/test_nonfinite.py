"""Issue 19 point 4: a finite loss with a NaN/inf gradient norm counts as non-finite (on the
device), ``skip`` drops the step that did the damage, and no checkpoint of non-finite weights is
ever written, whatever the policy."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from test_hot_path import Data, Poisoned, module, trainer

from nextok.lit import LMModule, NonFiniteLossError


class NaNGrad(LMModule):
    """Finite losses throughout; optimizer step 2's gradients hold a NaN (an overflowing
    backward pass)."""

    def on_after_backward(self) -> None:
        if self.global_step == 2:
            self.model.tok_emb.weight.grad[0, 0] = float("nan")


def test_nan_gradient_norm_with_a_finite_loss_stops_at_that_step(tmp_path, tiny_config):
    mod = module(tiny_config, NaNGrad, on_nonfinite="stop")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(NonFiniteLossError, match="not finite at step 2"):
        trainer(tmp_path, callbacks=[ckpt], enable_checkpointing=True).fit(mod, datamodule=Data())
    saved = sorted((tmp_path / "ck").glob("*.ckpt"))
    assert [p.name for p in saved] == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt"], saved
    for p in saved:
        sd = torch.load(p, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()), p


def test_skip_drops_the_step_whose_gradient_norm_is_nan(tmp_path, tiny_config):
    mod = module(tiny_config, NaNGrad, on_nonfinite="skip")
    before = {}
    orig = mod.on_before_optimizer_step

    def spy(optimizer):
        if mod.global_step == 2:
            before.update({n: p.detach().clone() for n, p in mod.model.named_parameters()})
        orig(optimizer)

    mod.on_before_optimizer_step = spy
    trainer(tmp_path, max_steps=4).fit(mod, datamodule=Data())
    assert before and mod.trainer.global_step == 4  # the run went on past the bad step
    for name, p in mod.model.named_parameters():
        assert torch.isfinite(p).all(), f"{name} holds NaN: the poisoned update was applied"


def test_no_checkpoint_of_nonfinite_weights_even_with_ignore(tmp_path, tiny_config):
    mod = module(tiny_config, Poisoned, on_nonfinite="ignore")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(
        NonFiniteLossError, match="refusing to save a checkpoint at step 3: weights are not finite"
    ):
        trainer(tmp_path, callbacks=[ckpt], enable_checkpointing=True).fit(mod, datamodule=Data())
    assert sorted(p.name for p in (tmp_path / "ck").glob("*.ckpt")) == [
        "epoch=0-step=1.ckpt",
        "epoch=0-step=2.ckpt",
    ]
