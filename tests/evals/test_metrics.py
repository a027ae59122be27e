"""Bits per byte: byte counts per token, and val/bpb against a hand computation."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from helpers.evals import tiny_tokenizer
from nextok.data import LMDataModule
from nextok.data.tokenization.tokenizer import save_tokenizer
from nextok.lit import LMModule
from nextok.metrics import LossTally, bits_per_byte, summarize, token_byte_lengths
from nextok.model import ModelConfig

TEXT = "déjà vu: naïve café — 東京 🐍 def f(x):\n    return x ** 2\n"


def _byte_level_decode_len(tok: Tokenizer, i: int) -> int:
    """Independent count: decode one token's byte-level characters to raw bytes."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()  # 256 characters, one per byte value
    s = tok.id_to_token(i)
    assert all(c in alphabet for c in s)
    return len(s)


def test_byte_level_counts_sum_to_the_text_bytes():
    tok = tiny_tokenizer()
    table = token_byte_lengths(tok)
    eot = tok.token_to_id("<|endoftext|>")
    assert table[eot] == 0  # special tokens count 0 bytes
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    assert int(table[ids].sum()) == len(TEXT.encode("utf-8"))
    for i in ids:
        assert table[i] == _byte_level_decode_len(tok, i)


def test_sentencepiece_style_counts():
    # Metaspace + byte fallback (Llama 2 / Mistral style): '▁' is a space, <0xNN> one byte
    vocab = {"<unk>": 0, "<s>": 1, "▁hello": 2, "▁wor": 3, "ld": 4, "<0xE2>": 5, "é": 6}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tok.add_special_tokens(["<s>"])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    table = token_byte_lengths(tok)
    assert list(table[:7]) == [5, 0, 6, 4, 2, 1, 2]  # <unk> is not special here: its text


def test_tally_matches_hand_computation():
    torch.manual_seed(0)
    V = 11
    logits = torch.randn(2, 5, V)
    y = torch.randint(0, V, (2, 5))
    y[1, 3] = -100
    token_bytes = torch.arange(V) % 4  # some tokens 0 bytes (like special tokens)
    tally = LossTally(2, token_bytes, "cpu")
    loss = torch.nn.functional.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-100)
    tally.add(1, loss, y)
    nats = nbytes = 0.0
    n = 0
    for b in range(2):
        for t in range(5):
            if y[b, t] == -100:
                continue
            nats += -torch.log_softmax(logits[b, t].double(), -1)[y[b, t]].item()
            nbytes += int(token_bytes[y[b, t]])
            n += 1
    s = summarize(tally.sums[:, 1])
    assert s["tokens"] == n and s["bytes"] == nbytes
    assert s["loss"] == pytest.approx(nats / n, rel=1e-6)
    assert s["bpb"] == pytest.approx(nats / (math.log(2) * nbytes), rel=1e-6)
    assert bits_per_byte(nats, nbytes) == pytest.approx(s["bpb"])
    assert summarize(tally.sums[:, 0]) == {}  # an empty group reports nothing


def test_val_bpb_of_a_validation_run_equals_hand_computation(tmp_path):
    tok = tiny_tokenizer()
    save_tokenizer(tok, tmp_path / "tok.json")
    dm = LMDataModule(
        tokenizer_path=str(tmp_path / "tok.json"),
        vocab_size=400,
        block_size=32,
        batch_size=4,
        max_val_batches=3,
        run_dir=str(tmp_path),
    )
    dm.prepare_data()
    dm.setup("validate")
    cfg = ModelConfig(vocab_size=448, block_size=32, n_layer=1, n_head=2, d_model=32)
    module = LMModule(cfg)
    module.tokenizer = tok
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    torch.manual_seed(0)
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    # by hand: every validation target's nats and its bytes (decoded independently)
    nats, nbytes, n = 0.0, 0, 0
    model = module.model.eval()
    special = {tok.token_to_id("<|endoftext|>")}
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            logp = torch.log_softmax(model(x)[0].double(), -1)
            for b in range(y.shape[0]):
                for t in range(y.shape[1]):
                    i = int(y[b, t])
                    nats -= float(logp[b, t, i])
                    nbytes += 0 if i in special else _byte_level_decode_len(tok, i)
                    n += 1
    assert n == 3 * 4 * 32
    assert metrics["val/loss"] == pytest.approx(nats / n, rel=1e-5)
    assert metrics["val/bpb"] == pytest.approx(nats / (math.log(2) * nbytes), rel=1e-5)


def _train_and_validate(tmp_path, vocab: int, steps: int) -> dict[str, float]:
    dm = LMDataModule(
        vocab_size=vocab,
        block_size=64,
        batch_size=8,
        max_val_batches=None,
        tokenizer_train_bytes=1_000_000,
        run_dir=str(tmp_path / f"v{vocab}"),
    )
    dm.prepare_data()
    dm.setup("fit")
    cfg = ModelConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=4, d_model=64)
    from nextok.optim import AdamWConfig, ScheduleConfig

    module = LMModule(
        cfg, optim=AdamWConfig(lr=3e-3), schedule=ScheduleConfig(name="cosine", warmup_steps=20)
    )
    module.tokenizer = dm.tokenizer
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=steps,
        check_val_every_n_epoch=None,
    )
    torch.manual_seed(0)
    trainer.fit(module, datamodule=dm)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


@pytest.mark.slow
def test_bpb_is_comparable_across_vocabulary_sizes(tmp_path):
    """Same text, same model size and steps, vocab 512 vs 2048: nats per token differ a lot,
    bits per byte little (measured on the whole held-out split)."""
    small = _train_and_validate(tmp_path, 512, 400)
    large = _train_and_validate(tmp_path, 2048, 400)
    print(f"vocab 512: {small}\nvocab 2048: {large}")
    assert large["val/loss"] > 1.25 * small["val/loss"]  # not comparable per token
    assert large["val/bpb"] == pytest.approx(small["val/bpb"], rel=0.15)
