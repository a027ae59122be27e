"""Process-wide GPU settings and what the attention kernels will be, in plain PyTorch.

Why here: these are facts about the device and the torch build, not about Lightning or the model;
the LightningModule applies them once at the start of a fit and logs the attention backend.
"""

from __future__ import annotations

import torch

from nextok.model import ModelConfig

SDPA_NAMES = {
    "FLASH_ATTENTION": "flash",
    "EFFICIENT_ATTENTION": "efficient (memory-efficient)",
    "CUDNN_ATTENTION": "cuDNN",
    "MATH": "math (unfused: slow, O(T^2) memory)",
    "OVERRIDEABLE": "overrideable",
    "ERROR": "none (SDPA rejects these inputs)",
}


def configure_cuda(tf32: bool = True) -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions (bf16/fp16 autocast is unaffected)."""
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32


def sdpa_backend(
    config: ModelConfig,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    seq_len: int | None = None,
    dropout: float | None = None,
) -> str:
    """The kernel ``F.scaled_dot_product_attention`` picks for this model's training attention.

    Asks torch's own dispatcher (``torch._fused_sdp_choice``) with tensors of the model's head
    shape, dtype and causal mask (``doc_mask``: an explicit boolean mask, as training passes),
    so the answer is the one training gets.
    """
    from torch.nn.attention import SDPBackend

    t = seq_len or config.block_size
    q = torch.zeros(1, config.n_head, t, config.head_dim, device=device, dtype=dtype)
    kv = torch.zeros(1, config.n_kv_head, t, config.head_dim, device=device, dtype=dtype)
    p = config.dropout if dropout is None else dropout
    gqa = config.n_kv_head != config.n_head
    mask = (
        torch.ones(1, 1, t, t, dtype=torch.bool, device=device).tril() if config.doc_mask else None
    )
    choice = torch._fused_sdp_choice(q, kv, kv, mask, p, mask is None, enable_gqa=gqa)
    return SDPBackend(choice).name


def describe_attention(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> str:
    """One line for the start-up log."""
    name = sdpa_backend(config, device, dtype)
    shape = f"{config.n_head}/{config.n_kv_head} heads (q/kv) x {config.head_dim}"
    return (
        f"attention: SDPA backend {SDPA_NAMES.get(name, name)} on {device.type} "
        f"({str(dtype).removeprefix('torch.')}, {'document-masked' if config.doc_mask else 'causal'}"
        f", {shape}, seq {config.block_size})"
    )
