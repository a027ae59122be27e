"""``nextok-train init_from=<HF folder>`` end to end, with a Llama-3-style tokenizer.

A random Qwen2 model (q/k/v biases) written by transformers' ``save_pretrained``, with a tokenizer
that has ``<|begin_of_text|>`` / ``<|end_of_text|>`` and no ``<|endoftext|>``:
- lr=0 for 2 steps, then ``nextok-export``: transformers computes the original logits (< 1e-4),
  the export is Qwen2 again and carries the same special tokens;
- lr>0: the training loss falls; the run generates (samples) and ``nextok-generate`` /
  ``nextok-eval`` accept the checkpoint and the HF folder itself.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from helpers.cli import console_cmd

transformers = pytest.importorskip("transformers")

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
TEXT = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(400))


def llama3_style_tokenizer(folder: Path) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[BOS, EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # as Llama 3's tokenizer.json: the post-processor prepends BOS; the config names both tokens
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"bos_token": BOS, "eos_token": EOS, "tokenizer_class": "PreTrainedTokenizerFast"}
        )
    )
    return tok


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qwen2")
    tok = llama3_style_tokenizer(folder)
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.token_to_id(BOS),
        eos_token_id=tok.token_to_id(EOS),
    )
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.3)  # non-zero q/k/v biases: dropping them would show
    eos = tok.token_to_id(EOS)
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=[eos, 7], do_sample=True, temperature=0.7, top_p=0.9
    )
    model.save_pretrained(folder, max_shard_size="40KB")  # sharded
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


def train(tmp_path: Path, hf_dir: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    return run(
        [
            *console_cmd("nextok-train", "nextok.cli.train"),
            f"init_from={hf_dir}",
            "data=local_text",
            f"data.data_files={corpus}",
            "data.val_fraction=0.05",
            "data.document_unit=line",
            "data.batch_size=4",
            "model.block_size=32",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            f"hydra.run.dir={run_dir}",
            "print_config=false",
            "logger.csv.flush_logs_every_n_steps=1",
            *extra,
        ],
        tmp_path,
    )


def losses(run_dir: Path) -> list[float]:
    rows = []
    for f in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        rows += [float(r["train/loss"]) for r in csv.DictReader(f.open()) if r.get("train/loss")]
    return rows


def test_init_from_lr0_then_export_gives_back_the_original(tmp_path, hf_dir):
    run_dir = tmp_path / "run"
    r = train(
        tmp_path,
        hf_dir,
        run_dir,
        "optim=adamw",  # the default run's Muon refuses lr 0
        "optim.lr=0",
        "schedule.warmup_steps=0",
        "schedule.min_lr=0",
        "trainer.max_steps=2",
        "trainer.val_check_interval=1",
        "callbacks.sampling=null",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "export"
    e = run(
        [
            *console_cmd("nextok-export", "nextok.cli.export"),
            f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"out={out}",
        ],
        tmp_path,
    )
    assert e.returncode == 0, e.stderr
    cfg = json.loads((out / "config.json").read_text())
    # llama, not the imported qwen2: transformers would load a qwen2 folder's tokenizer as
    # Qwen2Tokenizer (other ids than this Llama-3-style one); attention_bias with o_proj.bias=0
    # computes the same q/k/v-only biases
    assert cfg["model_type"] == "llama" and cfg["max_position_embeddings"] == 32

    ref = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager")
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager")
    idx = torch.randint(0, 320, (2, 32))
    with torch.no_grad():
        diff = (back.eval()(idx).logits - ref.eval()(idx).logits).abs().max().item()
    assert diff < 1e-4, diff
    print(f"[parity] init_from qwen2 (sharded) lr=0 -> export: {diff:.1e}")

    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert (tok_cfg["bos_token"], tok_cfg["eos_token"], tok_cfg["model_max_length"]) == (
        BOS,
        EOS,
        32,
    )
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok("def f1").input_ids[0] == hf_tok.convert_tokens_to_ids(BOS)
    assert hf_tok.pad_token is not None
    gen = json.loads((out / "generation_config.json").read_text())
    # the source's generation defaults travel through init_from, training and export
    assert gen["eos_token_id"] == [hf_tok.convert_tokens_to_ids(EOS), 7]
    assert (gen["do_sample"], gen["temperature"], gen["top_p"]) == (True, 0.7, 0.9)
    card = (out / "README.md").read_text()
    assert "| tokens trained | 256 |" in card and str(hf_dir) in card  # 2 steps x 4 x 32
    assert "validation loss (latest in the checkpoint)" in card and "at step 1, on " in card
    # the card says how much of the split that validation covered (a subset is named as one)
    assert "held-out split" in card and " tokens |" in card


@pytest.mark.slow  # 12 training steps + 3 more CLI runs: ~60 s
def test_init_from_trains_generates_and_hf_folder_is_a_ckpt(tmp_path, hf_dir):
    run_dir = tmp_path / "run"
    r = train(
        tmp_path,
        hf_dir,
        run_dir,
        "optim.lr=1e-2",
        "schedule.warmup_steps=2",
        "trainer.max_steps=12",
        "trainer.val_check_interval=12",
        "callbacks.sampling.max_new_tokens=8",
        "trainer.log_every_n_steps=1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    loss = losses(run_dir)
    assert len(loss) >= 10 and loss[-1] < loss[0] - 0.5, loss
    tok_cfg = json.loads((run_dir / "tokenizer_config.json").read_text())
    assert (tok_cfg["eos_token"], tok_cfg["add_bos_token"]) == (EOS, True)

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    for source in (ckpt, hf_dir):
        g = run(
            [
                *console_cmd("nextok-generate", "nextok.cli.generate"),
                f"ckpt={source}",
                "prompt=def",
                "max_new_tokens=8",
                "temperature=0",
            ],
            tmp_path,
        )
        assert g.returncode == 0, g.stderr[-2000:]
        assert g.stdout.startswith("def") and "generated" in g.stderr
    ev = run(
        [
            *console_cmd("nextok-eval", "nextok.cli.evaluate"),
            f"ckpt={hf_dir}",
            "data=local_text",
            f"data.data_files={tmp_path / 'corpus.txt'}",
            "data.val_fraction=0.05",
            "data.document_unit=line",
            "max_batches=2",
            "batch_size=2",
        ],
        tmp_path,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]


def test_init_from_contradicting_override_is_one_line(tmp_path, hf_dir):
    r = train(tmp_path, hf_dir, tmp_path / "run", "model.n_layer=3", "trainer.max_steps=1")
    assert r.returncode == 2
    assert "model.n_layer=3 contradicts" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # 2 gloo processes per variant, ~60 s each
@pytest.mark.parametrize(
    "trainer",
    [["trainer=ddp_sim"], ["trainer=fsdp_cpu", "trainer.strategy.meta_init=true"]],
    ids=["ddp", "fsdp2-meta-init"],
)
def test_init_from_distributed_keeps_the_weights(tmp_path, hf_dir, trainer):
    run_dir = tmp_path / "run"
    r = train(
        tmp_path,
        hf_dir,
        run_dir,
        *trainer,
        "optim=adamw",  # the default run's Muon refuses lr 0
        "optim.lr=0",
        "schedule.warmup_steps=0",
        "schedule.min_lr=0",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "callbacks.sampling=null",
        "trainer.strategy.save_distributed_checkpoint=false" if "fsdp" in trainer[0] else "seed=1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    from nextok.checkpoint import load_checkpoint

    ours = load_checkpoint(run_dir / "checkpoints" / "last.ckpt").model
    ref = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager")
    idx = torch.randint(0, 320, (1, 32))
    with torch.no_grad():
        assert (ours(idx)[0] - ref.eval()(idx).logits).abs().max().item() < 1e-4
