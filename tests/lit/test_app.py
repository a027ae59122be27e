"""The app's run-time decisions (vocab, accumulation, resume, redaction) and config composition."""

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nextok.checkpoint.resume import find_resume_checkpoint, resolve_ckpt_path
from nextok.cli._conf import conf_dir
from nextok.lit.callbacks import unigram_loss
from nextok.run.config import accumulation, pad_vocab, redact, resolve_model_config

EXPERIMENTS = sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


def _compose(*overrides):
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("train", overrides=["run_dir=/tmp/x", *overrides])


def test_vocab_from_tokenizer_padded():
    cfg = _compose()
    assert cfg.model.vocab_size is None
    assert resolve_model_config(cfg, 4000).vocab_size == 4096  # padded to a multiple of 128
    assert resolve_model_config(_compose("pad_vocab_multiple_of=1"), 4000).vocab_size == 4000
    assert resolve_model_config(_compose("model.vocab_size=5000"), 4000).vocab_size == 5000
    with pytest.raises(ValueError, match="model.vocab_size=100 is smaller"):
        resolve_model_config(_compose("model.vocab_size=100"), 4000)
    assert pad_vocab(64, 64) == 64 and pad_vocab(65, 64) == 128


def test_accumulation_from_global_batch():
    cfg = OmegaConf.create({"global_batch_size": None, "global_batch_tokens": None})
    assert accumulation(cfg, 8, 256, 1) == 1
    cfg.global_batch_size = 64
    assert accumulation(cfg, 8, 256, 2) == 4
    cfg.global_batch_size, cfg.global_batch_tokens = None, 524288
    assert accumulation(cfg, 16, 1024, 8) == 4  # the GPT-2 recipe
    cfg.global_batch_tokens = 1000
    with pytest.raises(ValueError, match="multiple of the block size"):
        accumulation(cfg, 16, 1024, 8)
    cfg.global_batch_tokens = None
    cfg.global_batch_size = 12
    with pytest.raises(ValueError, match="not divisible"):
        accumulation(cfg, 8, 256, 1)


def test_resume_auto(tmp_path):
    assert resolve_ckpt_path(None, "auto", tmp_path) is None  # nothing yet: fresh start
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "best-step000010.ckpt").write_bytes(b"x")
    (ckpts / "last.ckpt").write_bytes(b"x")
    assert find_resume_checkpoint(tmp_path) == ckpts / "last.ckpt"
    assert resolve_ckpt_path(None, "auto", tmp_path) == str(ckpts / "last.ckpt")
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        resolve_ckpt_path("/nope.ckpt", None, tmp_path)
    with pytest.raises(ValueError, match="resume"):
        resolve_ckpt_path(None, "yes", tmp_path)


def test_redact_secrets():
    out = redact(
        {
            "logger": {"wandb": {"api_key": "abc", "project": "p"}},
            "x": [{"hf_token": "t"}],
            "tokenizer_path": "/a",
        }
    )
    assert out["logger"]["wandb"] == {"api_key": "<redacted>", "project": "p"}
    assert out["x"] == [{"hf_token": "<redacted>"}]
    assert "abc" not in str(out) and "'t'" not in str(out)
    # token counts and special tokens are not secrets (they belong in a published model card)
    plain = {"max_new_tokens": 8, "prompt_tokens": 4, "eos_token": "<|e|>", "token": "s"}
    assert redact(plain) == {**plain, "token": "<redacted>"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose_and_instantiate_configs(experiment):
    """Every experiment composes and its model/optim/schedule nodes build valid objects."""
    from hydra.utils import instantiate

    cfg = _compose(f"experiment={experiment}")
    assert cfg.name == experiment
    model = resolve_model_config(cfg, 1000)
    assert model.block_size == cfg.data.block_size
    instantiate(cfg.optim)
    instantiate(cfg.schedule)


def test_unigram_loss():
    # add-one smoothing over a vocabulary of 2: p(0) = (3+1)/(4+2), p(1) = (1+1)/(4+2)
    got = unigram_loss([0, 0, 0, 1], [0, 1], 2)
    assert got == pytest.approx(-(math.log(4 / 6) + math.log(2 / 6)) / 2)


def test_resume_auto_starts_fresh_only_when_there_is_provably_no_checkpoint(tmp_path):
    """Issue 19 point 7: a ``checkpoints`` that is a file made resume=auto start fresh."""
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    assert resolve_ckpt_path(None, "auto", tmp_path) is None  # an empty folder: fresh
    (ckpts / "best-step000010.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"holds checkpoints \(best-step000010.ckpt\) but no last"):
        resolve_ckpt_path(None, "auto", tmp_path)
    (ckpts / "best-step000010.ckpt").unlink()
    ckpts.rmdir()
    ckpts.write_text("not a folder")
    with pytest.raises(ValueError, match="checkpoints is not a folder"):
        resolve_ckpt_path(None, "auto", tmp_path)
    ckpts.unlink()
    ckpts.symlink_to(tmp_path / "gone")
    with pytest.raises(ValueError, match="is a broken link"):
        resolve_ckpt_path(None, "auto", tmp_path)
    ckpts.unlink()
    ckpts.mkdir()
    (ckpts / "last.ckpt").symlink_to(tmp_path / "gone.ckpt")  # an entry that cannot be read
    with pytest.raises(ValueError, match="resume=auto: cannot read .*last.ckpt"):
        resolve_ckpt_path(None, "auto", tmp_path)


def test_resume_with_a_garbage_run_dir_tokenizer_is_one_line(tmp_path):
    """Resuming checks the run dir's tokenizer.json against the checkpoint's: a file that is not
    a tokenizer is named in one line (it was a traceback from the tokenizers library)."""
    import torch

    from nextok.checkpoint import META_KEY
    from nextok.checkpoint.resume import pair_tokenizer
    from nextok.data.tokenization.tokenizer import train_bpe

    tok = train_bpe(iter(["def f(x):\n    return x\n"] * 20), 300)
    ckpt = tmp_path / "last.ckpt"
    torch.save({META_KEY: {"tokenizer_json": tok.to_str()}}, ckpt)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError) as err:
        pair_tokenizer(ckpt, tmp_path, None)
    assert str(err.value).startswith(f"{tmp_path / 'tokenizer.json'} is not a valid tokenizer.json")
