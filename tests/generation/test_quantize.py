"""Weight-only int8/int4 quantization (torchao): perplexity bounds on a briefly trained model,
exact refusals, and the byte counts the benchmark reports."""

from __future__ import annotations

import importlib.util
import math
import sysconfig
from pathlib import Path

import pytest
import torch

from nextok.generation import SamplingParams, generate
from nextok.generation.quantize import (
    bytes_read_per_step,
    check_quantize,
    quantize_model,
    weight_bytes,
)
from nextok.model import ModelConfig, Transformer

if importlib.util.find_spec("torchao") is None:
    pytest.skip("quantization needs torchao (pip install 'nextok[quant]')", allow_module_level=True)

BLOCK = 64
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _ids(files: list[str], tokenizer) -> torch.Tensor:
    text = "".join((STDLIB / f).read_text(encoding="utf-8") for f in files)
    return torch.tensor(tokenizer.encode(text).ids)


@pytest.fixture(scope="module")
def trained():
    """A 2-layer d=64 model trained ~1 s on stdlib sources, and held-out token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    train_files = ["textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py"]
    tok.train_from_iterator(
        [(STDLIB / f).read_text(encoding="utf-8") for f in train_files], trainer
    )
    train, held = _ids(train_files, tok), _ids(["pprint.py"], tok)[: 32 * BLOCK]
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Transformer(
        ModelConfig(vocab_size=512, block_size=BLOCK, n_layer=2, n_head=4, n_kv_head=2, d_model=64)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        starts = torch.randint(0, len(train) - BLOCK - 1, (16,), generator=g)
        block = torch.stack([train[s : s + BLOCK + 1] for s in starts])
        _, loss = model(block[:, :-1], targets=block[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(n_threads)
    return model.eval(), held


def perplexity(model: Transformer, ids: torch.Tensor) -> float:
    blocks = ids[: len(ids) // (BLOCK + 1) * (BLOCK + 1)].view(-1, BLOCK + 1)
    with torch.no_grad():
        _, loss = model(blocks[:, :-1], targets=blocks[:, 1:])
    return math.exp(loss.item())


def copy_of(model: Transformer) -> Transformer:
    twin = Transformer(model.config)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@pytest.mark.parametrize("mode, bound", [("int8", 0.01), ("w8a8", 0.01), ("int4", 0.05)])
def test_quantized_perplexity_within_bound(trained, mode, bound):
    model, held = trained
    base = perplexity(model, held)
    assert base < 150, f"the trained model should be far below uniform (512): ppl {base:.1f}"
    q = quantize_model(copy_of(model), mode)
    ppl = perplexity(q, held)
    assert ppl != base  # the weights really changed
    print(f"{mode}: perplexity {ppl:.3f} vs {base:.3f}")
    assert ppl <= base * (1 + bound), f"{mode}: perplexity {ppl:.3f} vs {base:.3f}"


def test_quantized_bytes_and_greedy_decode(trained):
    model, _ = trained
    full, read = weight_bytes(model), bytes_read_per_step(model)
    emb = model.tok_emb.weight.numel() * 4
    assert full == read  # tied: the embedding table is the head's matrix, read every step
    q8 = quantize_model(copy_of(model), "int8")
    # int8 linears: 1 byte per weight + per output row an fp32 scale and an int8 zero point (held
    # though symmetric); the tied table stays fp32
    linear = [m for m in q8.modules() if isinstance(m, torch.nn.Linear)]
    expect = sum(m.weight.shape[0] * (m.weight.shape[1] + 4 + 1) for m in linear)
    small = sum(p.numel() * 4 for n, p in model.named_parameters() if p.ndim < 2)
    assert bytes_read_per_step(q8) == expect + small
    assert weight_bytes(q8) == expect + small + emb
    q4 = quantize_model(copy_of(model), "int4")
    assert bytes_read_per_step(q4) < bytes_read_per_step(q8) < read
    out = generate(q8, [[1, 2, 3]], 8, SamplingParams(temperature=0))
    assert len(out[0]) == 8


def _ops_run(model: torch.nn.Module, x: torch.Tensor) -> set[str]:
    with torch.no_grad(), torch.profiler.profile() as prof:
        model(x)
    return {e.key for e in prof.key_averages()}


def test_w8a8_runs_the_int8_matmul_kernel(trained):
    """int8 weight-only converts each weight to float for a float matmul; w8a8 multiplies int8 by
    int8 in ``aten::_int_mm`` (the reason it is faster on the CPU)."""
    model, held = trained
    x = held[:16].view(1, -1)
    int8 = _ops_run(quantize_model(copy_of(model), "int8"), x)
    w8a8 = _ops_run(quantize_model(copy_of(model), "w8a8"), x)
    assert "aten::_int_mm" in w8a8 and "aten::_int_mm" not in int8
    assert "aten::mm" in int8


def test_none_is_unchanged_and_bad_mode_refused(make_model):
    model = make_model()
    assert quantize_model(model, None) is model and quantize_model(model, "none") is model
    assert type(model.lm_head.weight) is torch.nn.Parameter
    with pytest.raises(ValueError, match=r"^quantize='int3' is not one of null, int8, w8a8, int4$"):
        check_quantize("int3")


def test_int4_refusals(make_model):
    with pytest.raises(ValueError, match="output width to be a multiple of 16; lm_head has 97"):
        quantize_model(make_model(), "int4")
    with pytest.raises(ValueError, match="input width to be a multiple of 32; .* has 48"):
        quantize_model(make_model(vocab_size=128, d_model=48, n_head=4), "int4")
    with pytest.raises(
        ValueError, match="no checked torchao weight-only int4 kernel for device cuda"
    ):
        quantize_model(make_model(vocab_size=128), "int4", device="cuda")


def test_moe_and_double_quantization_refused(make_model):
    with pytest.raises(ValueError, match="dense models only"):
        quantize_model(make_model(mlp="moe", n_experts=4, moe_top_k=2, moe_ffn_hidden=16), "int8")
    model = quantize_model(make_model(), "int8")
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(model, "int8")


def test_missing_torchao_is_one_line(make_model, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # as if not installed
    with pytest.raises(
        ValueError, match=r"quantize= needs torchao .*pip install 'nextok\[quant\]'"
    ):
        quantize_model(make_model(), "int8")
