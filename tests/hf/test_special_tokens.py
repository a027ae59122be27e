"""Any Hugging Face tokenizer for training and generation: EOS separator, BOS when asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from nextok.checkpoint import load_checkpoint
from nextok.data import LMDataModule, train_bpe
from nextok.data.packing import encode_documents
from nextok.data.tokenization.tokenizer import SpecialTokens, load_tokenizer_config, special_tokens
from nextok.generation import SamplingParams, encode_prompt, generate_text
from nextok.hf import export_hf
from nextok.model import ModelConfig, Transformer

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
TEXT = ["def f(x):\n    return x\n", "class A:\n    pass\n", "import os\nprint(os.sep)\n"] * 30


def bpe(special: list[str], template: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        TEXT,
        trainers.BpeTrainer(
            vocab_size=290,
            special_tokens=special,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    if template:  # Llama 3: the post-processor prepends BOS
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))]
        )
    return tok


def folder(tmp_path: Path, tok: Tokenizer, config: dict) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


def test_resolution_rules(tmp_path):
    ours = train_bpe(TEXT, 300)
    assert special_tokens(ours) == SpecialTokens(eos="<|endoftext|>", pad="<|endoftext|>")

    llama3 = bpe([EOS, BOS], template=True)
    s = special_tokens(llama3, {"bos_token": BOS, "eos_token": EOS})
    assert (s.eos, s.bos, s.add_bos) == (EOS, BOS, True)  # from the post-processor

    llama2 = bpe(["<unk>", "<s>", "</s>"], template=False)
    llama2.post_processor = processors.TemplateProcessing(  # as Llama 2's tokenizer.json
        single="<s> $A", special_tokens=[("<s>", llama2.token_to_id("<s>"))]
    )
    cfg = {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "add_bos_token": True}
    assert special_tokens(llama2, cfg) == SpecialTokens("</s>", "<s>", add_bos=True, pad="</s>")
    assert not special_tokens(llama2, cfg, add_bos=False).add_bos
    assert special_tokens(llama2, cfg, eos="<unk>").eos == "<unk>"

    with pytest.raises(ValueError, match="data.eos_token='<nope>' is not in"):
        special_tokens(llama2, cfg, eos="<nope>")
    with pytest.raises(ValueError, match="no EOS token.*set data.eos_token"):
        special_tokens(llama3, {})
    d = folder(tmp_path / "t", llama3, {"bos_token": BOS, "eos_token": EOS})
    assert load_tokenizer_config(d / "tokenizer.json")["eos_token"] == EOS


def test_documents_get_bos_and_the_tokenizers_eos(tmp_path):
    tok = bpe([EOS, BOS], template=True)
    eos, bos = tok.token_to_id(EOS), tok.token_to_id(BOS)
    out = encode_documents(tok, ["a b", "c"], eos, np.dtype(np.uint16), bos)
    a, c = (tok.encode(t, add_special_tokens=False).ids for t in ("a b", "c"))
    assert out.tolist() == [bos, *a, eos, bos, *c, eos]

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXT))
    tdir = folder(tmp_path / "tok", tok, {"bos_token": BOS, "eos_token": EOS})
    dm = LMDataModule(
        source="text",
        data_files=str(corpus),
        document_unit="line",
        tokenizer_path=str(tdir),
        block_size=16,
        batch_size=2,
        val_fraction=0.1,
        run_dir=str(tmp_path / "run"),
    )
    dm.prepare_data()
    dm.setup("fit")
    ids = np.asarray(dm.train_tokens).tolist()
    docs = sum(1 for t in TEXT for line in t.split("\n"))  # an upper bound on documents
    assert ids[0] == bos and 0 < ids.count(eos) == ids.count(bos) <= docs
    assert all(ids[i + 1] == bos for i, t in enumerate(ids[:-1]) if t == eos)


def test_generation_stops_on_the_tokenizers_eos(tmp_path):
    tok = bpe([EOS, BOS], template=True)  # EOS is id 0
    model = Transformer(ModelConfig(vocab_size=320, block_size=32, n_layer=1, n_head=2, d_model=16))
    with torch.no_grad():
        model.norm.weight.zero_()  # all logits 0: greedy picks id 0, the EOS
    assert encode_prompt(tok, "def", EOS, BOS)[0] == tok.token_to_id(BOS)
    assert generate_text(model.eval(), tok, ["def"], 5, SamplingParams(temperature=0), eos=EOS) == [
        ""
    ]


def test_hf_folder_is_a_checkpoint_for_generate_and_eval(tmp_path):
    tok = bpe([EOS, BOS], template=True)
    model = Transformer(ModelConfig(vocab_size=320, block_size=32, n_layer=1, n_head=2, d_model=16))
    special = special_tokens(tok, {"bos_token": BOS, "eos_token": EOS})
    out = export_hf(model, tmp_path / "hf", tok, special)
    loaded = load_checkpoint(out)
    assert loaded.special == special and loaded.meta["hf_family"] == "llama"
    idx = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        assert torch.equal(loaded.model(idx)[0], model.eval()(idx)[0])
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        (out / "tokenizer.json").unlink()
        load_checkpoint(out)


@pytest.mark.parametrize("add_bos", [True, False])
def test_export_makes_transformers_encode_as_training_did(tmp_path, add_bos):
    transformers = pytest.importorskip("transformers")
    for name, tok, cfg in (
        (
            "llama2",
            bpe(["<unk>", "<s>", "</s>"], template=False),
            {"bos_token": "<s>", "eos_token": "</s>"},
        ),
        ("llama3", bpe([EOS, BOS], template=True), {"bos_token": BOS, "eos_token": EOS}),
    ):
        special = special_tokens(tok, cfg, add_bos=add_bos)
        model = Transformer(
            ModelConfig(vocab_size=320, block_size=32, n_layer=1, n_head=2, d_model=16)
        )
        out = export_hf(model, tmp_path / name / str(add_bos), tok, special)
        hf_tok = transformers.AutoTokenizer.from_pretrained(out)
        trained = ([tok.token_to_id(special.bos)] if add_bos else []) + tok.encode(
            "def f(x):", add_special_tokens=False
        ).ids
        assert hf_tok("def f(x):").input_ids == trained, name
        assert hf_tok.eos_token == special.eos and hf_tok.pad_token == special.eos
