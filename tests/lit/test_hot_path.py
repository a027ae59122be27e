"""The training hot path: no host sync per step, device-side non-finite guard, log-step bar."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from helpers.trainer import quiet_trainer
from nextok.lit import LMModule, NonFiniteLossError
from nextok.lit.callbacks import ProgressBar, RichProgressBar
from nextok.lit.callbacks.host_syncs import HostSyncCounter
from nextok.optim import AdamWConfig, ScheduleConfig

VOCAB, BLOCK = 64, 16


class Data(L.LightningDataModule):
    def __init__(self, n: int = 64, batch_size: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        seq = (torch.randint(0, VOCAB, (n, 1), generator=g) + torch.arange(BLOCK + 1)) % VOCAB
        self.x, self.y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[:8], self.y[:8]), batch_size=self.batch_size)


def trainer(tmp_path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **{"max_steps": 6, "log_every_n_steps": 1000, **kw})


def module(cfg, cls=LMModule, **kw) -> LMModule:
    kw.setdefault("optim", AdamWConfig(lr=3e-3))
    kw.setdefault("schedule", ScheduleConfig(name="constant"))
    return cls(cfg, **kw)


class Poisoned(LMModule):
    """The loss becomes NaN from optimizer step 2 on (a NaN weight)."""

    def training_step(self, batch, batch_idx):
        if self.global_step == 2:
            with torch.no_grad():
                self.model.blocks[0].mlp.fc.weight[0, 0] = float("nan")
        return super().training_step(batch, batch_idx)


class ItemEveryStep(LMModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        loss.item()
        return loss


def steady_syncs(tmp_path, mod, **kw) -> float:
    counter = HostSyncCounter(out_file=str(tmp_path / "syncs.json"))
    trainer(tmp_path, callbacks=[counter], **kw).fit(mod, datamodule=Data())
    assert counter.summary["steady"]["steps"] >= 3
    return counter.summary["steady"]["syncs_per_step"]


def test_no_host_sync_per_step_and_the_counter_sees_one(tmp_path, tiny_config):
    assert steady_syncs(tmp_path, module(tiny_config)) == 0
    assert steady_syncs(tmp_path, module(tiny_config, ItemEveryStep)) == 1
    # the progress bar (Lightning's default, rich) reads its numbers at log steps only
    assert steady_syncs(tmp_path, module(tiny_config), enable_progress_bar=True) == 0


@pytest.mark.parametrize("accumulate", [1, 2])
def test_skip_with_fused_adamw_is_device_side_and_sync_free(tmp_path, tiny_config, accumulate):
    mod = module(
        tiny_config,
        Poisoned,
        on_nonfinite="skip",
        optim=AdamWConfig(lr=3e-3, implementation="fused"),
    )
    snap = {}

    class Snapshot(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 2 and not snap:
                opt = trainer.optimizers[0]
                snap["params"] = {
                    n: p.detach().clone() for n, p in pl_module.model.named_parameters()
                }
                snap["steps"] = [opt.state[p]["step"].clone() for p in pl_module.model.parameters()]
                snap["params"]["blocks.0.mlp.fc.weight"][0, 0] = float("nan")  # Poisoned's edit

    counter = HostSyncCounter(out_file=str(tmp_path / "syncs.json"))
    t = trainer(tmp_path, callbacks=[Snapshot(), counter], accumulate_grad_batches=accumulate)
    t.fit(mod, datamodule=Data())
    opt = t.optimizers[0]
    assert all(g["fused"] for g in opt.param_groups)
    assert t.global_step == 6 and snap  # the run went on past the bad steps
    for name, p in mod.model.named_parameters():  # steps 2..5 all dropped on the device
        assert torch.allclose(p, snap["params"][name], equal_nan=True), name
    for p, step in zip(mod.model.parameters(), snap["steps"]):
        assert torch.equal(opt.state[p]["step"], step)  # AdamW's step count did not move
    assert counter.summary["steady"]["syncs_per_step"] == 0
    assert not hasattr(opt, "found_inf")  # the guard does not outlive its step


def test_skip_fused_matches_a_normal_step_when_finite(tmp_path, tiny_config):
    """The device-side guard changes nothing when every loss is finite."""
    finals = []
    for policy in ("skip", "ignore"):
        torch.manual_seed(0)
        mod = module(
            tiny_config, on_nonfinite=policy, optim=AdamWConfig(lr=3e-3, implementation="fused")
        )
        trainer(tmp_path, max_steps=3).fit(mod, datamodule=Data())
        finals.append([p.detach().clone() for p in mod.model.parameters()])
    for a, b in zip(*finals):
        assert torch.equal(a, b)


def test_stop_raises_naming_the_first_bad_step_before_saving_it(tmp_path, tiny_config):
    mod = module(tiny_config, Poisoned, on_nonfinite="stop")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_last=True)
    with pytest.raises(NonFiniteLossError, match="at step 2"):
        trainer(tmp_path, callbacks=[ckpt], enable_checkpointing=True, max_steps=6).fit(
            mod, datamodule=Data()
        )
    state = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values())  # step 2's weights: never saved


def test_default_progress_bar_is_swapped_for_the_log_step_twin(tmp_path, tiny_config):
    t = trainer(tmp_path, enable_progress_bar=True, log_every_n_steps=2, max_steps=4)
    t.fit(module(tiny_config), datamodule=Data())
    bar = t.progress_bar_callback
    assert isinstance(bar, (ProgressBar, RichProgressBar))
    shown = bar.get_metrics(t, t.lightning_module)
    assert isinstance(shown["loss"], float)


def test_model_summary_flops_are_real(tmp_path, tiny_config):
    """Lightning's summary measures one forward over a block_size sequence (torch's FlopCounter).

    torch's counter knows the CUDA attention kernels but not the CPU flash kernel, so on CPU the
    summary holds the matmul FLOPs only; both bounds are nextok's own count."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    mod = module(tiny_config)
    trainer(tmp_path, max_steps=1).fit(mod, datamodule=Data())
    flops = ModelSummary(mod).total_flops
    c = tiny_config
    attention = 4 * c.n_layer * c.n_head * c.head_dim * BLOCK * BLOCK  # forward, not causal-halved
    everything = mod.model.flops_per_token(BLOCK) / 3 * BLOCK  # forward = 1/3 of fwd + bwd
    assert everything - attention <= flops <= everything * 1.0001
