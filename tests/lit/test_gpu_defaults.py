"""GPU defaults that can be checked on CPU: non-blocking batch copies, TF32 switch, SDPA report,
fused AdamW choice, pinned memory, vocabulary padding."""

import pytest
import torch

from nextok.data import LMDataModule
from nextok.lit import LMModule
from nextok.model import ModelConfig
from nextok.optim.adamw import impl_kwargs
from nextok.runtime import configure_cuda, describe_attention, sdpa_backend

CFG = ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_kv_head=2, d_model=32)


def test_batches_move_to_an_accelerator_without_blocking(monkeypatch):
    """Lightning's transfer (used by LMModule) copies with non_blocking=True off the CPU; the meta
    device stands in for CUDA (both are outside Lightning's blocking device types)."""
    calls = []
    original = torch.Tensor.to

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("non_blocking", False))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    x = torch.zeros(2, 16, dtype=torch.long)
    out = LMModule(CFG).transfer_batch_to_device((x, x), torch.device("meta"), 0)
    assert out[0].device.type == "meta" and calls == [True, True]


def test_tf32_switch():
    before = torch.get_float32_matmul_precision()
    try:
        configure_cuda(tf32=True)
        assert torch.get_float32_matmul_precision() == "high"
        configure_cuda(tf32=False)
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision(before)


def test_sdpa_backend_is_torch_dispatchers_choice():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    assert sdpa_backend(CFG, "cpu") == "FLASH_ATTENTION"  # torch's CPU flash kernel
    with sdpa_kernel(SDPBackend.MATH):  # what the dispatcher is allowed to pick changes the answer
        assert sdpa_backend(CFG, "cpu") == "MATH"
    line = describe_attention(CFG, torch.device("cpu"), torch.bfloat16)
    assert line.startswith("attention: SDPA backend flash on cpu (bfloat16, causal, 4/2 heads")


def test_fused_adamw_is_chosen_for_cuda_parameters():
    assert impl_kwargs([torch.zeros(1)], "auto") == {"foreach": True}
    # what the choice reads of a parameter: its device (no CUDA tensor can be made here)
    on_cuda = type("Param", (), {"device": torch.device("cuda"), "data": None})()
    assert impl_kwargs([on_cuda], "auto") == {"fused": True}


def test_pinned_memory_follows_cuda(tmp_path):
    dm = LMDataModule(source="stdlib", run_dir=str(tmp_path))
    assert dm.loaders.pin_memory is torch.cuda.is_available()


@pytest.mark.parametrize("n,padded", [(4000, 4096), (4096, 4096), (50257, 50304), (128256, 128256)])
def test_vocab_padding_default_is_128(n, padded):
    from omegaconf import OmegaConf

    from nextok.cli._conf import conf_dir
    from nextok.run.config import pad_vocab, resolve_model_config  # noqa: F401

    multiple = OmegaConf.load(f"{conf_dir()}/train.yaml").pad_vocab_multiple_of
    assert multiple == 128 and pad_vocab(n, multiple) == padded
