"""The lean LM loss equals the plain full-logits path (loss and gradients) and holds less memory."""

import importlib.util
from pathlib import Path

import pytest
import torch

from nextok.model import ModelConfig, Transformer
from nextok.model.loss import chunked_cross_entropy, lm_loss, plain_cross_entropy, resolve_loss_impl

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "loss_memory.py"


def _bench():
    spec = importlib.util.spec_from_file_location("loss_memory", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _inputs(n=50, d=16, v=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (0.5 * torch.randn(v, d, generator=g)).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g)
    y[::7] = -100
    return h, w, y


@pytest.mark.parametrize("chunk_rows", [1, 7, 50, 1000])
def test_chunked_equals_plain_loss_and_grads(chunk_rows):
    h, w, y = _inputs()
    ref = plain_cross_entropy(h, w, y)
    gh, gw = torch.autograd.grad(ref, (h, w))
    loss = chunked_cross_entropy(h, w, y, chunk_rows=chunk_rows)
    dh, dw = torch.autograd.grad(loss, (h, w))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dh, gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dw, gw, rtol=1e-5, atol=1e-6)


def test_chunked_scales_with_upstream_gradient_and_refuses_a_second_backward():
    h, w, y = _inputs()
    (2.5 * plain_cross_entropy(h, w, y)).backward()
    ref = h.grad.clone()
    h.grad = None
    loss = 2.5 * chunked_cross_entropy(h, w, y, chunk_rows=8)
    loss.backward(retain_graph=True)
    torch.testing.assert_close(h.grad, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="one backward pass"):
        loss.backward()


def test_no_grad_and_all_ignored():
    h, w, y = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            chunked_cross_entropy(h, w, y, 8), plain_cross_entropy(h, w, y), rtol=1e-5, atol=1e-6
        )
    assert torch.isnan(chunked_cross_entropy(h, w, torch.full_like(y, -100)))
    assert torch.isnan(plain_cross_entropy(h, w, torch.full_like(y, -100)))


@pytest.mark.parametrize("tie", [True, False])
def test_transformer_default_loss_equals_plain_path_for_every_parameter(tie):
    cfg = ModelConfig(
        vocab_size=97, block_size=16, n_layer=2, n_head=2, d_model=32, tie_embeddings=tie
    )
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.loss_chunk_rows = 10  # several chunks
    x = torch.randint(0, 97, (3, 16))
    y = torch.randint(0, 97, (3, 16))
    y[1, :4] = -100
    logits, loss = model(x, y)
    assert logits is None  # the whole batch's logits are never built
    grads = torch.autograd.grad(loss, list(model.parameters()))
    model.loss_impl = "plain"
    logits, ref = model(x, y)
    assert logits.shape == (3, 16, 97)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_autocast_close_to_plain():
    h, w, y = _inputs(n=64, d=32, v=128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = plain_cross_entropy(h, w, y)
        gh, gw = torch.autograd.grad(ref, (h, w))
        loss = chunked_cross_entropy(h, w, y, chunk_rows=16)
        dh, dw = torch.autograd.grad(loss, (h, w))
    assert loss.dtype == torch.float32 and dh.dtype == h.dtype and dw.dtype == w.dtype
    torch.testing.assert_close(loss, ref, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(dw, gw, rtol=5e-2, atol=2e-3)


def test_resolve_impl():
    assert resolve_loss_impl("auto", torch.device("cpu")) == "chunked"
    assert resolve_loss_impl("plain", torch.device("cpu")) == "plain"
    with pytest.raises(ValueError, match="must be one of"):
        resolve_loss_impl("fast", torch.device("cpu"))
    with pytest.raises(ValueError, match="needs CUDA"):
        lm_loss(*_inputs(), impl="liger")


def test_cpu_peak_measurement_sees_known_allocations():
    bench = _bench()

    def fn():
        a = torch.ones(2_500_000)  # 10 MB
        del a
        b = torch.ones(1_000_000)  # 4 MB
        del b

    assert bench.cpu_peak_bytes(fn) == 10_000_000


def test_loss_memory_benchmark_small_shape():
    """The benchmark's own measurement at a small shape: chunked holds far less than plain."""
    bench = _bench()
    args = bench.parse(
        "--device cpu --vocab 8192 --seq 256 --layers 1 --d-model 64 --heads 2 --kv-heads 1 "
        "--rounds 1 --steps 1 --chunk-rows 64".split()
    )
    res = bench.measure(args)
    assert res["plain"]["peak_ratio"] > 2.5  # logits, their log-softmax and its gradient
    assert res["chunked"]["peak_ratio"] < 1.0
