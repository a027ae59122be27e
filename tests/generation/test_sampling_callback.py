"""SamplingCallback in a real Lightning Trainer with real CSV and TensorBoard loggers."""

from __future__ import annotations

import csv
import glob

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from nextok.generation import SamplingParams, generate_text, make_generator
from nextok.lit.callbacks.sampling import SamplingCallback

PROMPTS = ["def ", "import "]


class TinyLM(pl.LightningModule):
    """The smallest module with the interface the callback expects: ``.model`` (+ ``.tokenizer``)."""

    def __init__(self, model, tokenizer=None):
        super().__init__()
        self.model = model.train()
        if tokenizer is not None:
            self.tokenizer = tokenizer

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.model(x[:, :-1], x[:, 1:])[1]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=1e-2)


class TinyData(pl.LightningDataModule):
    def __init__(self, vocab, tokenizer=None):
        super().__init__()
        self.vocab, self.tokenizer = vocab, tokenizer

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(
            TensorDataset(torch.randint(0, self.vocab, (32, 17), generator=g)), batch_size=4
        )


def _fit(tmp_path, module, data, callback, max_steps=4, loggers=None):
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=loggers or False,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def test_callback_logs_to_csv_and_tensorboard(tmp_path, tokenizer, make_model, capsys):
    vocab = tokenizer.get_vocab_size()
    model = make_model(vocab_size=vocab, block_size=32)
    cb = SamplingCallback(
        PROMPTS,
        max_new_tokens=10,
        temperature=0.8,
        top_k=50,
        top_p=0.95,
        seed=7,
        every_n_steps=2,
        on_train_end=True,
    )
    loggers = [CSVLogger(tmp_path / "csv"), TensorBoardLogger(tmp_path / "tb")]
    trainer = _fit(tmp_path, TinyLM(model, tokenizer), TinyData(vocab), cb, loggers=loggers)

    # sampled at steps 2 and 4; train end (also step 4) is not sampled twice
    assert [(h["step"], h["prompt"]) for h in cb.history] == [
        (2, "def "),
        (2, "import "),
        (4, "def "),
        (4, "import "),
    ]
    # the last samples are what the trained model generates with the documented seeds
    want = generate_text(
        model,
        tokenizer,
        PROMPTS,
        10,
        SamplingParams(temperature=0.8, top_k=50, top_p=0.95),
        generator=[make_generator(7 + i) for i in range(2)],
    )
    assert [h["text"] for h in cb.history[2:]] == want
    assert (
        cb.history[0]["text"] != cb.history[2]["text"]
        or cb.history[1]["text"] != cb.history[3]["text"]
    )

    with open(tmp_path / "csv" / "lightning_logs" / "version_0" / "samples.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "prompt", "sample"]
    assert rows[1:] == [[str(h["step"]), h["prompt"], h["text"]] for h in cb.history]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(trainer.loggers[1].log_dir, size_guidance={"tensors": 0})
    events.Reload()
    assert {"samples/0/text_summary", "samples/1/text_summary"} <= set(events.Tags()["tensors"])
    logged = events.Tensors("samples/1/text_summary")
    assert [e.step for e in logged] == [2, 4]
    body = logged[-1].tensor_proto.string_val[0].decode()
    assert body.strip().startswith("import") and want[1].strip().split("\n")[0] in body

    out = capsys.readouterr().out
    assert "samples at step 4" in out and f"import {want[1]}" in out


def test_bad_sampling_options_fail_when_the_callback_is_built():
    """Checked once, at construction, not after a whole training run."""
    with pytest.raises(ValueError, match="top_p must be in"):
        SamplingCallback(["def "], top_p=2.0)


def test_tokenizer_from_datamodule_and_clamped_length(tmp_path, tokenizer, make_model):
    vocab = tokenizer.get_vocab_size()
    model = make_model(vocab_size=vocab, block_size=16)
    cb = SamplingCallback(["def "], max_new_tokens=64, temperature=0, seed=0)
    room = 16 - len(tokenizer.encode("def ").ids)
    with pytest.warns(UserWarning, match=f"using {room}"):
        _fit(tmp_path, TinyLM(model), TinyData(vocab, tokenizer), cb, max_steps=1)
    assert len(cb.history) == 1 and cb.history[0]["step"] == 1
    want = generate_text(model, tokenizer, ["def "], room, SamplingParams(temperature=0))
    assert cb.history[0]["text"] == want[0] and want[0]


def test_without_tokenizer_warns_and_training_finishes(tmp_path, make_model):
    cb = SamplingCallback(["a"], max_new_tokens=4)
    with pytest.warns(UserWarning, match="no tokenizer"):
        trainer = _fit(tmp_path, TinyLM(make_model()), TinyData(97), cb, max_steps=1)
    assert trainer.global_step == 1 and cb.history == []


def test_bad_every_n_steps():
    with pytest.raises(ValueError, match="every_n_steps"):
        SamplingCallback(every_n_steps=0)


def test_conf_file_instantiates_the_callback():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nextok.cli._conf import conf_dir

    cfg = OmegaConf.load(f"{conf_dir()}/callbacks/sampling.yaml")
    cb = instantiate(cfg)["sampling"]
    # prompts=null: the openings of held-out documents (nextok.data.prompts)
    assert isinstance(cb, SamplingCallback) and cb.prompts is None
    assert (cb.num_prompts, cb.prompt_tokens) == (3, 8)
    assert glob.glob(f"{conf_dir()}/callbacks/sampling.yaml")


@pytest.mark.slow
def test_callback_logs_to_wandb_table_and_mlflow_artifact(
    tmp_path, tokenizer, make_model, monkeypatch
):
    """Slow (~40 s): wandb starts a service process; offline mode, no network."""
    import json

    from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    # MLflow 3 refuses its local file store unless asked (the training app sets this too);
    # SQLite would need the full mlflow package, not the mlflow-skinny that nextok depends on.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    vocab = tokenizer.get_vocab_size()
    cb = SamplingCallback(["def "], max_new_tokens=6, every_n_steps=1, on_train_end=False)
    loggers = [
        WandbLogger(save_dir=str(tmp_path), offline=True),
        MLFlowLogger(
            tracking_uri=f"file:{tmp_path}/mlruns", artifact_location=str(tmp_path / "artifacts")
        ),
    ]
    try:
        _fit(
            tmp_path,
            TinyLM(make_model(vocab_size=vocab, block_size=32), tokenizer),
            TinyData(vocab),
            cb,
            max_steps=2,
            loggers=loggers,
        )
    finally:
        import wandb

        wandb.finish()
    texts = [h["text"] for h in cb.history]
    tables = sorted(
        glob.glob(f"{tmp_path}/wandb/offline-run-*/files/media/table/samples_*.table.json")
    )
    assert len(tables) == 2
    with open(tables[-1]) as f:
        table = json.load(f)
    assert table["columns"] == ["step", "prompt", "sample"] and table["data"] == [
        [2, "def ", texts[1]]
    ]
    artifacts = sorted(glob.glob(f"{tmp_path}/artifacts/*/artifacts/samples/step_*.txt"))
    assert [a.rsplit("/", 1)[1] for a in artifacts] == ["step_00000001.txt", "step_00000002.txt"]
    with open(artifacts[-1]) as f:
        assert f.read() == f"--- prompt 'def '\ndef {texts[1]}\n"


def test_unsharded_model_is_an_eager_copy_when_blocks_are_compiled(make_model):
    from nextok.lit.callbacks.sampling import unsharded_model

    model = make_model()
    assert unsharded_model(model, True) is model and unsharded_model(model, False) is None
    for block in model.blocks:
        block.compile()
    copy = unsharded_model(model, True)
    assert copy is not model and not any(
        getattr(m, "_compiled_call_impl", None) is not None for m in copy.modules()
    )
    assert all(
        torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values())
    )
