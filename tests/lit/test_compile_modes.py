"""``module.compile_mode=blocks|model`` through a real Lightning fit with inductor (CPU).

Each mode: the compiled run's losses equal the eager run's, state-dict keys are unchanged, and
no frame is compiled again after the first optimizer step (no recompilation across steps).
"""

import lightning as L
import pytest
import torch
from test_hot_path import Data, trainer  # same folder helpers

from nextok.lit import LMModule
from nextok.model import ModelConfig
from nextok.optim import AdamWConfig, ScheduleConfig


class Frames(L.Callback):
    """Frames compiled by dynamo so far, after each training batch; losses seen."""

    def __init__(self) -> None:
        self.frames, self.losses = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.frames.append(torch._dynamo.utils.counters["frames"]["ok"])
        self.losses.append(float(outputs["loss"]))


def fit(tmp_path, **kw) -> tuple[LMModule, Frames]:
    cfg = ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=32)
    torch.manual_seed(0)
    mod = LMModule(cfg, optim=AdamWConfig(lr=3e-3), schedule=ScheduleConfig(name="constant"), **kw)
    frames = Frames()
    torch._dynamo.reset()
    trainer(tmp_path, max_steps=4, callbacks=[frames]).fit(mod, datamodule=Data())
    return mod, frames


@pytest.mark.slow  # inductor builds C++ kernels: ~40 s of CPU per mode
@pytest.mark.parametrize("mode", ["model", "blocks"])
def test_compile_mode_matches_eager_without_recompiling(tmp_path, mode):
    eager, ref = fit(tmp_path)
    mod, run = fit(tmp_path, compile=True, compile_mode=mode)
    assert run.frames[0] >= 1 and run.frames == [run.frames[0]] * 4, run.frames
    assert run.losses == pytest.approx(ref.losses, rel=1e-4, abs=1e-5)
    assert list(mod.state_dict()) == list(eager.state_dict())


def test_bad_compile_mode_is_one_line():
    cfg = ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=32)
    with pytest.raises(ValueError, match="module.compile_mode must be one of"):
        LMModule(cfg, compile_mode="graph")
