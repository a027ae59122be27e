"""Sliding-window attention: which layers slide is transformers' rule for every family, checked
by logits with a window shorter than the sequence; cached decoding stays exact; export keeps the
window."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny_models import logits, random_hf_model
from nextok.generation import SamplingParams, generate
from nextok.hf import export_hf, import_hf
from nextok.model import ModelConfig, Transformer

transformers = pytest.importorskip("transformers")

SMALL = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
MOE = dict(SMALL, intermediate_size=16, num_experts_per_tok=2)
# name -> (config class, kwargs, sliding layers transformers uses)
CASES = {
    "mistral": (transformers.MistralConfig, dict(SMALL, sliding_window=4), [0, 1, 2]),
    "mixtral": (
        transformers.MixtralConfig,
        dict(MOE, num_local_experts=4, sliding_window=4),
        [0, 1, 2],
    ),
    "qwen2-max-window-layers": (
        transformers.Qwen2Config,
        dict(SMALL, use_sliding_window=True, sliding_window=4, max_window_layers=1),
        [1, 2],
    ),
    "qwen3-layer-types": (
        transformers.Qwen3Config,
        dict(
            SMALL,
            use_sliding_window=True,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        ),
        [0, 2],
    ),
    # transformers slides every Qwen3-MoE layer (max_window_layers is not read there)
    "qwen3_moe": (
        transformers.Qwen3MoeConfig,
        dict(
            MOE,
            num_experts=4,
            moe_intermediate_size=16,
            use_sliding_window=True,
            sliding_window=4,
            max_window_layers=2,
        ),
        [0, 1, 2],
    ),
}


def _saved(tmp_path, case):
    cls, kw, _ = CASES[case]
    ref = random_hf_model(cls, **kw)
    ref.save_pretrained(tmp_path / "hf")
    if "max_window_layers" in kw:  # save_pretrained drops keys the config class does not know
        f = tmp_path / "hf" / "config.json"
        c = json.loads(f.read_text())
        c.setdefault("max_window_layers", kw["max_window_layers"])
        f.write_text(json.dumps(c))
    return ref, tmp_path / "hf"


@pytest.mark.parametrize("case", sorted(CASES))
def test_sliding_layers_match_transformers(tmp_path, case):
    ref, folder = _saved(tmp_path, case)
    ours = import_hf(folder)
    assert ours.config.sliding_window == 4
    assert [i for i in range(3) if ours.config.slides(i)] == CASES[case][2]
    torch.manual_seed(0)
    idx = torch.randint(0, 96, (2, 24))
    want = logits(ref, idx)
    diff = (logits(ours, idx) - want).abs().max().item()
    assert diff < 1e-4, diff
    full = import_hf(folder)
    full.config.sliding_window = None  # the same weights attending fully differ: the test can fail
    assert (logits(full, idx) - want).abs().max() > 1e-2
    # export keeps the window: transformers reads back the same computation
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    out = export_hf(ours, tmp_path / "out", family=model_type)
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager")
    assert (logits(back.eval(), idx) - want).abs().max() < 1e-4


def _greedy_uncached(model, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation, every step recomputed from the whole sequence (no cache)."""
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(logits(model, torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt) :]


def test_cached_decoding_is_exact_with_a_window():
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=64,
        block_size=32,
        n_layer=3,
        n_head=2,
        d_model=16,
        sliding_window=3,
        sliding_layers=[0, 2],
    )
    model = Transformer(cfg).eval()
    prompts = [[5, 9, 1, 33, 7, 2, 8], [4, 11]]  # a padded batch: different lengths
    greedy = SamplingParams(temperature=0.0)
    batched = generate(model, prompts, 20, greedy)
    for p, got in zip(prompts, batched, strict=True):
        assert got == _greedy_uncached(model, p, 20)
        assert generate(model, [p], 20, greedy)[0] == got


def test_window_off_keeps_training_numerics():
    torch.manual_seed(0)
    base = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=16)
    a = Transformer(ModelConfig(**base))
    b = Transformer(ModelConfig(**base, sliding_window=16))  # covers the block: full attention
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(a(x, x)[1], b(x, x)[1])


@pytest.mark.parametrize(
    ("family", "kw", "match"),
    [
        ("llama", {}, "needs sliding_window=null"),
        ("mistral", dict(sliding_layers=[1]), "needs sliding_layers=null"),
    ],
)
def test_families_without_the_pattern_refuse_it(tmp_path, family, kw, match):
    cfg = ModelConfig(
        vocab_size=64, block_size=16, n_layer=2, n_head=2, d_model=16, sliding_window=4, **kw
    )
    with pytest.raises(
        ValueError, match=f"family='{family}' cannot express this model: it {match}"
    ):
        export_hf(Transformer(cfg), tmp_path / "o", family=family)
