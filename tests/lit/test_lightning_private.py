"""nextok.lit.lightning_private against the installed Lightning: every accessor on a real tiny Trainer.

Each test checks what nextok relies on (the value means what nextok thinks it means), not only
that an attribute exists: when Lightning changes an internal, the test naming the accessor fails.
"""

from __future__ import annotations

import csv
import importlib
import inspect
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch.utils.data import DataLoader, TensorDataset

from helpers.trainer import quiet_trainer
from nextok.checkpoint.resume import find_resume_checkpoint
from nextok.lit import lightning_private as private
from nextok.lit.callbacks import ModelCheckpoint, ThroughputMonitor


class Tiny(L.LightningModule):
    """A linear model that logs its loss every step (Lightning decides which steps are written)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.flops_per_batch = 1.0e3  # read by nextok's ThroughputMonitor

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x.float()), y.float())
        self.log("probe/loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class Probe(L.Callback):
    """Records the accessors' answers at the hooks where nextok asks them."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append(
            dict(
                batch=batch_idx,
                step=trainer.global_step,
                accumulating=private.is_accumulating(trainer),
                log_step=private.should_update_logs(trainer),
            )
        )
        if private.should_update_logs(trainer):
            private.log_metrics(trainer, {"probe/sent": float(trainer.global_step)})


def trainer(tmp_path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **{"max_steps": 6, **kw})


def logged_steps(logger: CSVLogger, key: str) -> dict[int, float]:
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


def test_accumulation_and_log_steps_mean_what_nextok_assumes(tmp_path):
    probe = Probe()
    logger = CSVLogger(str(tmp_path), name="csv")
    t = trainer(
        tmp_path, max_steps=6, accumulate_grad_batches=2, log_every_n_steps=2, logger=logger
    )
    t.callbacks.append(probe)
    t.fit(Tiny())
    rows = probe.rows
    assert len(rows) == 12  # 6 optimizer steps x 2 micro-batches
    # is_accumulating: exactly the micro-batches after which no optimizer step happened
    previous = 0
    for row in rows:
        assert row["accumulating"] == (row["step"] == previous), row
        previous = row["step"]
    # should_update_logs: exactly the steps whose self.log values Lightning wrote
    written = logged_steps(logger, "probe/loss")
    flagged = {r["step"] - 1 for r in rows if r["log_step"] and not r["accumulating"]}
    assert written and set(written) == flagged
    # log_metrics: values sent at those steps reach the logger
    assert set(logged_steps(logger, "probe/sent")) == flagged


def test_is_log_step_covers_fast_dev_run(tmp_path):
    seen = []

    class P(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen.append((private.should_update_logs(trainer), private.is_log_step(trainer)))

    t = trainer(tmp_path, fast_dev_run=2, callbacks=[P()], log_every_n_steps=50)
    t.fit(Tiny())
    assert seen and all(is_log for _, is_log in seen)
    assert not all(raw for raw, _ in seen)  # Lightning alone would skip them


def test_set_max_steps_after_the_trainer_is_built(tmp_path):
    t = trainer(tmp_path, max_steps=10)
    private.set_max_steps(t, 3)
    assert t.max_steps == 3
    t.fit(Tiny())
    assert t.global_step == 3


def test_hpc_save_path_is_where_resume_auto_looks(tmp_path):
    t = trainer(tmp_path, max_steps=2)
    t.fit(Tiny())
    path = private.hpc_save_path(t)
    assert path == str(tmp_path / "hpc_ckpt_1.ckpt")
    t.save_checkpoint(path)
    assert find_resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
    assert private.hpc_save_path(t) == str(tmp_path / "hpc_ckpt_2.ckpt")  # the next requeue


def test_cluster_environment(tmp_path, monkeypatch):
    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(private.cluster_environment(trainer(tmp_path)), LightningEnvironment)
    slurm = SLURMEnvironment(auto_requeue=False)
    assert private.cluster_environment(trainer(tmp_path, plugins=[slurm])) is slurm


def test_tensor_parallel_size_read_by_distributed_ranks():
    """nextok.distributed.ranks reads ModelParallelStrategy._tensor_parallel_size (it may not
    import this module): the real strategy must still store the degree under that name."""
    from nextok.distributed.ranks import data_parallel_rank_size
    from nextok.lit.strategy import FSDP2Strategy

    tp2 = FSDP2Strategy(data_parallel_size=2, tensor_parallel_size=2)
    assert tp2._tensor_parallel_size == 2
    trainer = SimpleNamespace(strategy=tp2, global_rank=3, world_size=4)
    assert data_parallel_rank_size(trainer) == (1, 2)  # ranks (2, 3) share data shard 1


def test_attached_trainer(tmp_path):
    module = Tiny()
    assert private.attached_trainer(module) is None
    with pytest.raises(RuntimeError):
        module.trainer  # noqa: B018 - the public property refuses, hence the accessor
    t = trainer(tmp_path, max_steps=1)
    t.fit(module)
    assert private.attached_trainer(module) is t


def test_progress_bar_settings():
    tqdm = TQDMProgressBar(refresh_rate=3, process_position=1, leave=True)
    assert private.tqdm_bar_settings(tqdm) == (3, 1, True)
    assert TQDMProgressBar(*private.tqdm_bar_settings(tqdm))._leave is True
    rich = RichProgressBar(refresh_rate=2, leave=True, console_kwargs={"width": 50})
    rate, leave, theme, console = private.rich_bar_settings(rich)
    assert (rate, leave, theme, console) == (2, True, rich.theme, {"width": 50})


def test_format_summary_table_is_lightnings_layout():
    summary = ModelSummary(Tiny())
    args = (
        summary.total_parameters,
        summary.trainable_parameters,
        summary.model_size,
        summary.total_training_modes,
        summary.total_flops,
        *summary._get_summary_data(),
    )
    assert private.format_summary_table(*args) == str(summary)


def test_locate():
    assert private.locate("nextok.lit.callbacks.ThroughputMonitor") is ThroughputMonitor
    assert private.locate("torch.nn.Linear") is torch.nn.Linear
    with pytest.raises(ImportError):
        private.locate("nextok.no_such_module.Thing")


@pytest.mark.parametrize("cls_path", sorted(private.OVERRIDDEN_PRIVATE_HOOKS))
def test_overridden_private_hooks_exist(tmp_path, cls_path):
    module, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if name == "ThroughputMonitor":
        instance = cls(batch_size_fn=len)
    else:
        instance = cls()
    for member in private.OVERRIDDEN_PRIVATE_HOOKS[cls_path]:
        assert hasattr(instance, member), f"{cls_path}.{member} is gone"


def test_private_hook_signatures():
    """The overridden private methods still take what nextok's overrides take and pass."""
    from lightning.pytorch.callbacks import ModelCheckpoint as LCheckpoint
    from lightning.pytorch.callbacks import ThroughputMonitor as LThroughput

    def params(f):
        return list(inspect.signature(f).parameters)

    assert params(LThroughput._update) == ["self", "trainer", "pl_module", "batch", "iter_num"]
    assert params(LThroughput._compute) == ["self", "trainer", "iter_num"]
    assert params(LCheckpoint._save_last_checkpoint) == ["self", "trainer", "monitor_candidates"]
    assert params(LCheckpoint._should_skip_saving_checkpoint) == ["self", "trainer"]
    assert params(RichProgressBar._get_train_description) == ["self", "current_epoch"]
    # the rich bar asks this hook for the epoch's description (nextok drops Lightning's "/-2")
    assert "_get_train_description" in inspect.getsource(RichProgressBar.on_train_epoch_start)


def test_subclass_effects_on_a_real_run(tmp_path):
    """nextok's ModelCheckpoint saves `last` at the final step between two save intervals, and its
    ThroughputMonitor logs tokens/s at log steps: both through the private hooks above."""
    logger = CSVLogger(str(tmp_path), name="csv")
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ck"), every_n_train_steps=4, save_last=True)
    t = trainer(
        tmp_path,
        max_steps=6,
        logger=logger,
        log_every_n_steps=2,
        enable_checkpointing=True,
        callbacks=[ckpt, ThroughputMonitor(window_size=2)],
    )
    t.fit(Tiny())
    last = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # Lightning alone would have left step 4
    rates = logged_steps(logger, "train/tokens_per_sec")
    assert rates and all(v > 0 for v in rates.values())
