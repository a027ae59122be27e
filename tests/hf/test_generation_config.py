"""An imported model's generation defaults (EOS list, sampling settings) survive export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from helpers.tiny_models import random_hf_model

transformers = pytest.importorskip("transformers")

SOURCE = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20}


def test_export_keeps_the_eos_list_and_sampling_settings(tmp_path):
    src = tmp_path / "src"
    model = random_hf_model(
        transformers.LlamaConfig,
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    model.generation_config = transformers.GenerationConfig(eos_token_id=[1, 5], **SOURCE)
    model.save_pretrained(src)
    vocab = {f"t{i}": i for i in range(96)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(src / "tokenizer.json"))
    (src / "tokenizer_config.json").write_text(json.dumps({"eos_token": "t1"}))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "nextok.cli.export", f"ckpt={src}", f"out={out}"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    gen = transformers.GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == [1, 5]
    assert {k: getattr(gen, k) for k in SOURCE} == SOURCE
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == [1, 5]
    torch.manual_seed(0)
    idx = torch.randint(0, 96, (1, 8))
    back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.allclose(back(idx).logits, model(idx).logits, atol=1e-5)
