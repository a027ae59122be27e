"""The architecture switches from the speedrun records (``model.zero_init_proj`` ...): each one's
shapes and reference, its Hugging Face export verdict, a loss that falls, and the inference paths
(KV-cached generation, the paged serving engine) staying exact with it on."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.generation import context_model
from nextok.generation import SamplingParams, generate
from nextok.hf import export_hf, family_for_export
from nextok.model import ModelConfig, Transformer, document_ids
from nextok.model.loss import chunked_cross_entropy, plain_cross_entropy
from nextok.serving import Engine, Request

GREEDY = SamplingParams(temperature=0)
# Each switch on its own, as a user turns it on (config overrides of a tiny model).
SWITCHES = {
    "zero_init_proj": dict(zero_init_proj=True),
    "logit_softcap": dict(logit_softcap=2.0),  # small: O(1) random weights give large logits
    "value_residual": dict(value_residual=True),
    "unet_skips": dict(unet_skips=True),
    "doc_mask": dict(doc_mask=True),  # generation: the prompt is one document
}


def small(**kw) -> ModelConfig:
    base = dict(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
    return ModelConfig(**{**base, **kw})


def greedy_without_cache(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """The reference: a full forward over the whole sequence for every new token."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([seq]))
            seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt) :]


def prompts(lengths=(3, 17, 1, 9)) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 97, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("name", SWITCHES)
def test_kv_cached_greedy_equals_no_cache_forward(name):
    model = context_model(**SWITCHES[name])
    for p in prompts():
        assert generate(model, [p], 12, GREEDY)[0] == greedy_without_cache(model, p, 12)


@pytest.mark.parametrize("name", SWITCHES)
def test_paged_engine_greedy_equals_each_prompt_alone(name):
    model = context_model(**SWITCHES[name])
    ps = prompts()
    engine = Engine(model, kv_blocks=40, block_size_tokens=4, max_tokens_per_step=7)
    assert engine.generate([Request(p, 12, GREEDY) for p in ps]) == [
        generate(model, [p], 12, GREEDY)[0] for p in ps
    ]


@pytest.mark.parametrize("name", SWITCHES)
def test_loss_decreases(name):
    torch.manual_seed(0)
    model = Transformer(small(**SWITCHES[name]))
    pattern = torch.randint(0, 97, (8,))
    seq = pattern.repeat(5)[None, :33]
    x, y = seq[:, :-1], seq[:, 1:]
    docs = document_ids(x, int(pattern[3])) if model.config.doc_mask else None  # 4 documents
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, loss = model(x, y, doc_ids=docs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


# ---------------------------------------------------------------------- zero_init_proj
def test_zero_init_proj_starts_every_block_as_the_identity():
    torch.manual_seed(0)
    model = Transformer(small(zero_init_proj=True))
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.proj.weight.any()
        assert block.attn.qkv.weight.std() > 0.01  # the other matrices keep their init
    idx = torch.randint(0, 97, (2, 10))
    logits, _ = model(idx)
    assert logits.shape == (2, 10, 97)
    torch.testing.assert_close(logits, model.lm_head(model.norm(model.tok_emb(idx))))


def test_zero_init_proj_covers_moe_experts_and_meta_init():
    cfg = small(zero_init_proj=True, mlp="moe", n_experts=4, moe_top_k=2, moe_ffn_hidden=16)
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device="cpu")
    model.init_weights()
    for block in model.blocks:
        assert not block.mlp.w_proj.any() and not block.attn.proj.weight.any()
        assert block.mlp.w_fc.std() > 0.01


def test_zero_init_proj_exports_as_llama():
    # an initialisation only: the trained weights are ordinary ones
    assert family_for_export(small(zero_init_proj=True)).model_type == "llama"


def test_default_init_is_unchanged():
    torch.manual_seed(0)
    proj = Transformer(small()).blocks[0].attn.proj.weight
    assert abs(proj.std().item() - 0.02 / math.sqrt(4)) < 3e-3


# ---------------------------------------------------------------------- logit_softcap
def test_softcap_bounds_the_returned_logits_and_the_loss_uses_them():
    capped = context_model(logit_softcap=3.0)
    plain = context_model()  # the same seed: the same weights
    idx = torch.randint(0, 97, (2, 12))
    targets = torch.randint(0, 97, (2, 12))
    raw, _ = plain(idx)
    logits, _ = capped(idx)
    assert raw.abs().max() > 6 and logits.abs().max() <= 3.0
    torch.testing.assert_close(logits, 3.0 * torch.tanh(raw / 3.0))
    want = torch.nn.functional.cross_entropy(logits.view(-1, 97), targets.view(-1))
    with torch.no_grad():
        for impl in ("chunked", "plain"):
            capped.loss_impl = impl
            torch.testing.assert_close(capped(idx, targets)[1], want)


@pytest.mark.parametrize("chunk_rows", [5, 64])
def test_chunked_softcap_loss_and_gradients_equal_the_plain_path(chunk_rows):
    torch.manual_seed(0)
    h = torch.randn(24, 16, requires_grad=True)
    w = (3 * torch.randn(50, 16)).requires_grad_()  # logits well past the cap
    y = torch.randint(0, 50, (24,))
    y[3] = -100
    (1.5 * plain_cross_entropy(h, w, y, softcap=4.0)).backward()
    ref = (h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    (1.5 * chunked_cross_entropy(h, w, y, chunk_rows, softcap=4.0)).backward()
    torch.testing.assert_close((h.grad, w.grad), ref, rtol=1e-5, atol=1e-6)
    uncapped = plain_cross_entropy(h, w, y)
    assert abs(uncapped - plain_cross_entropy(h, w, y, softcap=4.0)) > 0.1


@pytest.mark.parametrize("cap", [0, -1.0, True, "15"])
def test_softcap_must_be_positive(cap):
    with pytest.raises(ValueError, match="model.logit_softcap must be a positive number or null"):
        small(logit_softcap=cap)


def test_softcap_export_is_refused_in_one_line(tmp_path):
    model = Transformer(small(logit_softcap=15.0))
    with pytest.raises(ValueError, match=r"^model.logit_softcap=15.0 has no Hugging Face") as e:
        export_hf(model, tmp_path / "out")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- value_residual
def test_value_residual_has_one_scalar_per_later_layer_and_learns_it():
    torch.manual_seed(0)
    model = Transformer(small(value_residual=True, n_layer=3))
    lambs = {n: p for n, p in model.named_parameters() if "value_residual" in n}
    assert sorted(lambs) == [f"blocks.{i}.attn.value_residual.lamb" for i in (1, 2)]
    assert all(p.shape == (1,) and p.item() == 0.5 for p in lambs.values())
    idx = torch.randint(0, 97, (2, 10))
    logits, _ = model(idx)
    assert logits.shape == (2, 10, 97)
    model(idx, idx)[1].backward()
    assert all(p.grad.abs().item() > 0 for p in lambs.values())


def test_value_residual_at_zero_is_the_plain_model_and_otherwise_differs():
    mixed = context_model(value_residual=True, n_layer=3)
    plain = context_model(n_layer=3)
    plain.load_state_dict(mixed.state_dict(), strict=False)  # all but the lambdas
    idx = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        assert not torch.allclose(mixed(idx)[0], plain(idx)[0], atol=1e-3)
        for block in mixed.blocks[1:]:
            block.attn.value_residual.lamb.zero_()
        torch.testing.assert_close(mixed(idx)[0], plain(idx)[0])


def test_value_residual_export_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^model.value_residual=True has no Hugging Face"):
        export_hf(Transformer(small(value_residual=True)), tmp_path / "out")


# ---------------------------------------------------------------------- unet_skips
def _unet_reference(model: Transformer, idx: torch.Tensor) -> torch.Tensor:
    """Handwritten: block outputs of the first half pushed, popped into the second half."""
    x, stack = model.tok_emb(idx), []
    rope = model.rope(torch.arange(idx.shape[1]))
    L, w = len(model.blocks), model.unet_skips.weight
    for i, block in enumerate(model.blocks):
        if i >= L - L // 2:
            x = x + w[L - 1 - i] * stack.pop()
        x, _ = block(x, rope, None, None)
        if i < L // 2:
            stack.append(x)
    return model.lm_head(model.norm(x))


@pytest.mark.parametrize("n_layer", [2, 3, 4])
def test_unet_skips_match_a_handwritten_reference(n_layer):
    assert Transformer(small(unet_skips=True, n_layer=n_layer)).unet_skips.weight.tolist() == [
        1.0
    ] * (n_layer // 2)
    model = context_model(unet_skips=True, n_layer=n_layer)  # O(1) random weights, skips too
    idx = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], _unet_reference(model, idx))
        model.unet_skips.weight.zero_()  # zero weights: the plain model
        plain = context_model(n_layer=n_layer)
        plain.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(model(idx)[0], plain(idx)[0])


def test_unet_skips_need_two_layers_and_export_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model.unet_skips needs model.n_layer >= 2, got 1"):
        small(unet_skips=True, n_layer=1)
    with pytest.raises(ValueError, match=r"^model.unet_skips=True has no Hugging Face"):
        export_hf(Transformer(small(unet_skips=True)), tmp_path / "out")


# ---------------------------------------------------------------------- doc_mask
SEP = 0  # the token that opens a document in these packed blocks


def test_document_ids_start_a_document_at_each_separator():
    idx = torch.tensor([[5, 6, SEP, 7, SEP, SEP, 8], [SEP, 1, 2, 3, 4, 5, 6]])
    assert document_ids(idx, SEP).tolist() == [[0, 0, 1, 1, 2, 3, 3], [1, 1, 1, 1, 1, 1, 1]]


@pytest.mark.parametrize(
    "overrides",
    [{}, dict(sliding_window=4), dict(sliding_window=64), dict(value_residual=True)],
)
def test_a_packed_block_scores_each_document_as_if_alone(overrides):
    """RoPE is relative, so a document's logits inside a packed block equal its logits alone."""
    model = context_model(doc_mask=True, n_layer=3, **overrides)
    g = torch.Generator().manual_seed(3)
    a = torch.randint(1, 97, (7,), generator=g)
    b = torch.cat([torch.tensor([SEP]), torch.randint(1, 97, (9,), generator=g)])
    c = torch.cat([torch.tensor([SEP]), torch.randint(1, 97, (5,), generator=g)])
    packed = torch.cat([a, b, c])[None]
    with torch.no_grad():
        out, _ = model(packed, doc_ids=document_ids(packed, SEP))
        unmasked, _ = model(packed)
        parts = [model(d[None])[0] for d in (a, b, c)]
    torch.testing.assert_close(out, torch.cat(parts, 1), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(unmasked[:, 7:], out[:, 7:], atol=1e-2)  # a mask that matters
    torch.testing.assert_close(unmasked[:, :7], out[:, :7])  # the first document sees no other


def test_doc_mask_loss_uses_the_mask_and_refuses_a_cache():
    model = context_model(doc_mask=True)
    x = torch.tensor([[3, 4, SEP, 5, 6, SEP, 7, 8]])
    docs = document_ids(x, SEP)
    with torch.no_grad():
        logits, _ = model(x, doc_ids=docs)
        _, loss = model(x, x, doc_ids=docs)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[0], x[0]))
    with pytest.raises(ValueError, match="doc_ids .* needs a full forward without a KV cache"):
        model(x, doc_ids=docs, kv_cache=model.make_kv_cache(1))
    with pytest.raises(ValueError, match="and the shape of idx"):
        model(x, doc_ids=docs[:, :4])


def test_doc_mask_exports_as_llama():
    # inference is one document, which every Hugging Face family computes
    assert family_for_export(small(doc_mask=True)).model_type == "llama"


@pytest.mark.parametrize("key", ["zero_init_proj", "value_residual", "unet_skips", "doc_mask"])
def test_on_off_switches_take_booleans_only(key):
    with pytest.raises(ValueError, match=f"model.{key} must be true or false, got 'yes'"):
        small(**{key: "yes"})
