"""Quantized (int8 / int4) linear weights for inference, through torchao's ``quantize_``.

Decoding one token reads every weight once, so it is bound by memory bandwidth: fewer bytes per
weight mean more tokens per second. :func:`quantize_model` is a model transform any front end
calls after loading (``nextok-generate``, ``nextok-eval``, ``nextok-serve``, the Python API):

- ``int8``: symmetric int8 weights, one scale per output channel (``Int8WeightOnlyConfig``),
  on any device. On the CPU it is slower than unquantized weights unless the decode step is
  compiled with bf16 activations (:func:`speed_note`): torchao's weight-only linear converts
  the whole int8 matrix to the activation dtype on every call, then runs a float matmul.
- ``w8a8``: the same int8 weights, and each activation row quantized to int8 on the fly (one
  scale per token, ``Int8DynamicActivationInt8WeightConfig``), so the matmul is an int8 x int8
  kernel (``aten._int_mm``, oneDNN on the CPU) that reads the int8 weights as they are: the
  eager CPU route to an int8 kernel. Activation rounding makes it less exact than ``int8``;
  on a CPU with AMX torchao hands oneDNN signed activations (s8s8), its slower form at batch 1.
- ``int4``: asymmetric int4 weights in groups of ``group_size`` input features, on the CPU's
  tinygemm kernel (``aten._weight_int4pack_mm_for_cpu``, torchao's ``Int4OpaqueTensor``). The
  kernel is fast with bf16 activations only; with fp32 ones it is far slower than the fp32
  matmul it replaces (:func:`speed_note`). Other devices are refused: torchao's GPU int4
  layouts need extra kernels (``mslk``) or bf16 weights, and none was checked here.

Every ``nn.Linear`` (the LM head included; a tied embedding table stays unquantized for its
lookups) is quantized, or the call is refused: torchao skips a layer it cannot quantize with
only a log line, which would be a silently partial result.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from nextok.model.moe import MoE

if TYPE_CHECKING:
    from collections.abc import Iterator

QUANTIZE_MODES = ("int8", "w8a8", "int4")
INT4_GROUP_SIZES = (128, 64, 32)  # the tinygemm CPU kernel's groups, largest (fewest scales) first
INT4_OUT_MULTIPLE = 16  # the kernel packs output rows in tiles of 16


@contextmanager
def _quiet_import() -> Iterator[None]:
    """Silence torchao's import-time log lines (optional GPU extensions that a CPU build lacks)."""
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _torchao():
    try:
        with _quiet_import():
            import torchao.quantization as tq
    except ImportError as err:
        raise ValueError(
            f"quantize= needs torchao ({err}); install it with: pip install 'nextok[quant]'"
        ) from err
    return tq


def check_quantize(mode: str | None) -> str | None:
    """``mode`` validated: None (or "none") for full precision, else one of :data:`QUANTIZE_MODES`."""
    if mode is None or mode == "none":
        return None
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize={mode!r} is not one of null, {', '.join(QUANTIZE_MODES)}")
    return mode


def speed_note(
    mode: str | None, dtype: torch.dtype, compiled: bool = False, device_type: str = "cpu"
) -> str | None:
    """A one-line note when ``mode`` on ``dtype`` weights runs a slow path, else None.

    int8 on the CPU: torchao's ``Int8Tensor`` linear converts the whole int8 weight to the
    activation dtype on every call, then runs a float matmul (more memory traffic than the
    float weights); the CPU int8 kernel ``aten._weight_int8pack_mm`` is reached only through
    inductor's weight-only-int8 rewrite, which needs bf16 activations (compiled, dtype=bf16).
    """
    if mode == "int4" and dtype == torch.float32:
        return (
            "quantize=int4 with fp32 activations runs torchao's slow CPU int4 path; "
            "dtype=bf16 uses its fast kernel"
        )
    if mode == "int8" and device_type == "cpu" and not (compiled and dtype == torch.bfloat16):
        return (
            "quantize=int8 on the CPU dequantizes every weight on every call (slower than "
            "unquantized weights); quantize=w8a8 (int8 activations too) or dtype=bf16 "
            "compile=true reach an int8 kernel"
        )
    return None


def check_compile(mode: str | None, compiled: bool) -> None:
    """Refuse a quantization mode whose compiled decode step is known to compute wrong logits.

    ``w8a8`` compiled by inductor (torch 2.13, torchao 0.18) gave logits off by ~3e4 and other
    greedy tokens than eager ``w8a8`` on the gpt2-small shape (the ``tiny`` shape matched):
    a silent wrong result, so the combination is not offered.
    """
    if compiled and mode == "w8a8":
        raise ValueError(
            "quantize=w8a8 with compile=true is refused: the compiled step computed wrong logits "
            "on the gpt2-small shape (torch 2.13, torchao 0.18); use one of the two"
        )


def int4_group_size(model: nn.Module) -> int:
    """The largest kernel group size that divides the input width of every ``nn.Linear``
    (refused when an output width is no multiple of :data:`INT4_OUT_MULTIPLE`)."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for name, m in linears.items():
        if m.out_features % INT4_OUT_MULTIPLE:
            hint = " (vocab_size: pad it, e.g. to a multiple of 64)" if name == "lm_head" else ""
            raise ValueError(
                f"quantize=int4 needs every linear layer's output width to be a multiple of "
                f"{INT4_OUT_MULTIPLE}; {name} has {m.out_features}{hint}; use quantize=int8"
            )
    widths = {name: m.in_features for name, m in linears.items()}
    for g in INT4_GROUP_SIZES:
        if all(w % g == 0 for w in widths.values()):
            return g
    name, width = next((n, w) for n, w in widths.items() if w % INT4_GROUP_SIZES[-1])
    raise ValueError(
        f"quantize=int4 needs every linear layer's input width to be a multiple of "
        f"{INT4_GROUP_SIZES[-1]}; {name} has {width}"
    )


def _is_quantized(weight: torch.Tensor) -> bool:
    return type(weight) not in (torch.Tensor, nn.Parameter)


def quantize_model(
    model: nn.Module, mode: str | None, device: torch.device | str | None = None
) -> nn.Module:
    """Quantize ``model``'s linear weights in place for inference; returns ``model``.

    ``mode``: None/"none" (unchanged), "int8", "w8a8" or "int4" (see the module docstring). ``device``:
    where the model runs (default: where its weights are); int4 is refused off the CPU.
    Raises ``ValueError`` (one line) for what cannot be done exactly.
    """
    mode = check_quantize(mode)
    if mode is None:
        return model
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not linears:
        raise ValueError(f"quantize={mode}: the model has no linear layers to quantize")
    if any(_is_quantized(m.weight) for m in linears.values()):
        raise ValueError(f"quantize={mode}: the model is already quantized")
    first = next(iter(linears.values())).weight
    device = torch.device(device) if device is not None else first.device
    experts = [n for n, m in model.named_modules() if isinstance(m, MoE)]
    if experts:
        raise ValueError(
            f"quantize={mode} supports dense models only: the experts of {experts[0]} are not "
            "linear layers and would stay unquantized"
        )
    tq = _torchao()
    if mode == "int8":
        config = tq.Int8WeightOnlyConfig(set_inductor_config=False)
    elif mode == "w8a8":
        config = tq.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    else:
        if device.type != "cpu":
            raise ValueError(
                f"quantize=int4 has no checked torchao weight-only int4 kernel for device "
                f"{device.type}; use quantize=int8 or device=cpu"
            )
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        config = PrototypeInt4WeightOnlyConfig(
            group_size=int4_group_size(model), set_inductor_config=False
        )
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tq.quantize_(model, config, device=device)
    skipped = [n for n, m in linears.items() if not _is_quantized(m.weight)]
    if skipped:
        raise ValueError(f"quantize={mode}: torchao left {skipped[0]} unquantized")
    model.train(was_training)
    if hasattr(model, "loss_impl"):  # the fused/chunked losses multiply by the raw weight matrix
        model.loss_impl = "plain"
    model.quantize_mode = mode  # read by compile_decode_step (check_compile)
    return model


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds; a torchao quantized tensor counts its inner data and scales."""
    if hasattr(t, "__tensor_flatten__") and _is_quantized(t):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all parameters (each shared tensor once)."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        seen.setdefault(id(p), tensor_bytes(p))
    return sum(seen.values())


def bytes_read_per_step(model: nn.Module) -> int:
    """Weight bytes one decode step reads: every parameter except embedding tables, of which a
    step reads only a row each (a table tied to the LM head is read whole, as the head's)."""
    seen: dict[int, int] = {}
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            continue
        for p in module.parameters(recurse=False):
            seen.setdefault(id(p), tensor_bytes(p))
    return sum(seen.values())
