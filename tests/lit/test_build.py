"""nextok.run.build: config nodes -> loggers, callbacks, Trainer."""

from __future__ import annotations

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger
from omegaconf import open_dict

from nextok.cli._conf import conf_dir
from nextok.lit.callbacks import ModelSummaryWithFlops, RunProgressBar
from nextok.lit.checkpoint_io import AtomicCheckpointIO
from nextok.run.build import build_loggers, build_trainer, console_callbacks, wandb_run_id


def _cfg(tmp_path, *overrides: str):
    with initialize_config_dir(conf_dir(), version_base="1.3"):
        return compose("train", overrides=[f"run_dir={tmp_path}", *overrides])


def test_loggers_from_nodes_and_a_bad_one_named(tmp_path):
    cfg = _cfg(tmp_path, "logger=csv")
    (logger,) = build_loggers(cfg, tmp_path)
    assert isinstance(logger, CSVLogger) and logger.save_dir == str(tmp_path)
    with open_dict(cfg):
        cfg.logger.csv.no_such_argument = 1
    with pytest.raises(ValueError, match="could not create logger 'csv'"):
        build_loggers(cfg, tmp_path)


def test_wandb_run_id_is_one_per_run_dir(tmp_path):
    first = wandb_run_id(tmp_path)
    assert len(first) == 12 and wandb_run_id(tmp_path) == first


def test_trainer_with_console_callbacks_and_atomic_checkpoints(tmp_path):
    cfg = _cfg(tmp_path, "logger=none", "trainer.max_steps=1")
    assert [type(c) for c in console_callbacks(cfg)] == [RunProgressBar, ModelSummaryWithFlops]
    marker = L.Callback()
    trainer = build_trainer(cfg, tmp_path, [], [marker])
    assert marker in trainer.callbacks
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert trainer.default_root_dir == str(tmp_path)
    quiet = _cfg(
        tmp_path, "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"
    )
    assert console_callbacks(quiet) == []


@pytest.mark.parametrize("resuming", [False, True])
def test_the_used_checkpoint_folder_warning_is_silenced_only_when_resuming(tmp_path, resuming):
    """Lightning warns "Checkpoint directory ... exists and is not empty" at every fit: expected
    for a resumed run (its own checkpoints are there), a real warning for a fresh one."""
    import warnings

    from nextok.lit.callbacks import ModelCheckpoint

    cfg = _cfg(tmp_path, "logger=none", "trainer.max_steps=1")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    trainer = build_trainer(cfg, tmp_path, [], [], resuming=resuming)
    ckpts = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(ckpts) == 2 and all(c.resuming is resuming for c in ckpts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for c in ckpts:
            c.setup(trainer, L.LightningModule(), "fit")
    said = [str(w.message) for w in caught if "exists and is not empty" in str(w.message)]
    assert len(said) == (0 if resuming else 1)  # best_checkpoint keeps top-k; last keeps 0


def test_wandb_without_a_login_says_how_to_log_in_or_go_offline(tmp_path, monkeypatch):
    """Real wandb, no API key, not a terminal: one line (wandb's own is a 12-frame traceback)."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_OFFLINE", "WANDB_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no ~/.config/wandb
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    cfg = _cfg(tmp_path, "logger=wandb")
    with pytest.raises(ValueError) as err:
        build_loggers(cfg, tmp_path)
    assert str(err.value) == (
        "could not create logger 'wandb': no W&B login: run `wandb login` (or set "
        "WANDB_API_KEY), or set WANDB_MODE=offline to log locally (`wandb sync` uploads later)"
    )


def test_terminal_tee_logs_plain_lines(tmp_path):
    """What the rich bar writes to a narrow terminal (redraws, escape codes, metrics wrapped to a
    second line, a log record behind the bar) leaves plain lines in the log; other text stays."""
    import io

    from nextok.tee import Tee

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = io.StringIO()
    tee = Tee(Terminal(), log)
    bar = "\x1b[2KEpoch 0    \x1b[35m\u2501\u2501\u2578\x1b[0m 3/20 0:00:01 \x1b[3mloss: 6.2\x1b[0m"
    tee.write("[nextok] run dir: x\n")
    tee.write(bar + "\n" + " " * 40 + "loss: 6.223\n")
    tee.write("\x1b[2K\x1b[1A\x1b[2K" + bar + "   [2026-12-05 13:54:19,590][INFO] fit stopped.\n")
    tee.log_line("step 5/20  loss: 6.248")
    tee.write("        x: int = 1\n\n")
    assert log.getvalue().splitlines() == [
        "[nextok] run dir: x",
        "[2026-12-05 13:54:19,590][INFO] fit stopped.",
        "step 5/20  loss: 6.248",
        "        x: int = 1",
        "",
    ]
