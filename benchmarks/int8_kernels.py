"""int8 weights at batch 1 on the CPU: which torchao path runs an int8 kernel, and how fast.

Decoding multiplies one activation row per sequence by every weight matrix. For each ``KxN``
linear shape this times, at batch 1, the fp32 and bf16 ``F.linear`` and every torchao 0.18
configuration that stores int8 weights (weight-only and dynamic-activation, each granularity and
activation mapping it offers, fp32 and bf16 activations), next to reference rows that are not
torchao's API: PyTorch's CPU int8 kernels called directly (``aten._weight_int8pack_mm``, the
weight-only kernel gpt-fast uses, and ``aten._int_mm`` in its s8s8 and u8s8 forms). Each call
takes the next of several weight copies (``--bytes`` of fp32 weights in all, about one
gpt2-small decode step), so the weights come from memory as in decoding; the candidates run
interleaved, median of ``--rounds``. ``max err``: the largest difference from the fp32 output
over the largest fp32 output. A configuration torchao cannot apply here is listed with its error.

    python benchmarks/int8_kernels.py --shapes 768x768 768x50257 --threads 1

:func:`use_int8pack` makes a model quantized with ``quantize=int8`` call
``aten._weight_int8pack_mm`` directly (a hand-written reference for ``benchmarks/fast_decode.py``,
not a torchao path).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def torchao_configs() -> dict[str, Callable]:
    """torchao 0.18's int8-weight configurations for linear layers, by label (fresh per call)."""
    import torchao.quantization as tq
    from torchao.quantization import MappingType, PerAxis, PerRow, PerTensor

    dyn = tq.Int8DynamicActivationInt8WeightConfig
    intx = tq.Int8DynamicActivationIntxWeightConfig
    return {
        "Int8WeightOnlyConfig() (quantize=int8)": lambda: tq.Int8WeightOnlyConfig(
            set_inductor_config=False
        ),
        "Int8WeightOnlyConfig(PerTensor)": lambda: tq.Int8WeightOnlyConfig(
            granularity=PerTensor(), set_inductor_config=False
        ),
        "Int8DynamicActivationInt8WeightConfig() (quantize=w8a8)": lambda: dyn(
            set_inductor_config=False
        ),
        "Int8DynamicActivationInt8WeightConfig(act PerTensor)": lambda: dyn(
            granularity=[PerTensor(), PerRow()], set_inductor_config=False
        ),
        "Int8DynamicActivationInt8WeightConfig(act ASYMMETRIC)": lambda: dyn(
            act_mapping_type=MappingType.ASYMMETRIC, set_inductor_config=False
        ),
        "IntxWeightOnlyConfig(int8, PerAxis(0))": lambda: tq.IntxWeightOnlyConfig(
            weight_dtype=torch.int8, granularity=PerAxis(0)
        ),
        "Int8DynamicActivationIntxWeightConfig(int8, PerAxis(0))": lambda: intx(
            weight_dtype=torch.int8, weight_granularity=PerAxis(0)
        ),
        "Int8DynamicActivationIntxWeightConfig(int8, opaque_torchao_auto)": lambda: intx(
            weight_dtype=torch.int8,
            weight_granularity=PerAxis(0),
            intx_packing_format="opaque_torchao_auto",
        ),
    }


def quantized_weight(w: torch.Tensor, config, dtype: torch.dtype) -> torch.Tensor:
    """``w`` (out x in) as torchao makes it for one ``nn.Linear`` of ``dtype`` under ``config``."""
    import torchao.quantization as tq

    holder = nn.Sequential(nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=dtype))
    holder.requires_grad_(False)[0].weight.copy_(w)
    tq.quantize_(holder, config)
    return holder[0].weight


def _int8pack_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    scale = self.weight.scale.flatten().to(x.dtype)
    y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), self.weight.qdata, scale)
    y = y.reshape(*x.shape[:-1], -1)
    return y if self.bias is None else y + self.bias


def use_int8pack(model: nn.Module) -> nn.Module:
    """Reference only: every linear of a ``quantize=int8`` model (torchao ``Int8Tensor`` weights,
    one scale per output row) calls ``aten._weight_int8pack_mm`` on its int8 data and scales."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.forward = types.MethodType(_int8pack_forward, m)
    return model


def candidates(k: int, n: int, copies: int) -> tuple[dict[str, Callable], dict[str, int]]:
    """Callables ``fn(i)`` (one batch-1 linear on weight copy ``i``) by label, and weight bytes."""
    torch.manual_seed(0)
    ws = [torch.randn(n, k) * 0.02 for _ in range(copies)]
    wb = [w.bfloat16() for w in ws]
    x = torch.randn(1, k)
    xb = x.bfloat16()
    fns: dict[str, Callable] = {
        "fp32 F.linear": lambda i: F.linear(x, ws[i]),
        "bf16 F.linear": lambda i: F.linear(xb, wb[i]),
    }
    size = {"fp32 F.linear": 4 * k * n, "bf16 F.linear": 2 * k * n}
    for label, make in torchao_configs().items():
        for dtype, act in ((torch.float32, x), (torch.bfloat16, xb)):
            name = f"{label}, {'fp32' if dtype == torch.float32 else 'bf16'} activations"
            try:
                qs = [quantized_weight(w, make(), dtype) for w in ws]
                F.linear(act, qs[0])
            except Exception as err:  # noqa: BLE001 - reported as a row: torchao cannot run it here
                print(f"{name}: not available: {type(err).__name__}: {str(err).splitlines()[0]}")
                break
            fns[name] = lambda i, act=act, qs=qs: F.linear(act, qs[i])
            size[name] = k * n
    per_row = torchao_configs()["Int8WeightOnlyConfig() (quantize=int8)"]
    q8 = [quantized_weight(w, per_row(), torch.float32) for w in ws]
    data = [(q.qdata, q.scale.flatten(), q.scale.flatten().bfloat16()) for q in q8]
    xs8 = torch.randint(-127, 128, (1, k), dtype=torch.int8)
    xu8 = (xs8.int() + 128).to(torch.uint8)
    pack = torch.ops.aten._weight_int8pack_mm
    refs = {
        "reference: aten._weight_int8pack_mm, fp32 activations": lambda i: pack(
            x, data[i][0], data[i][1]
        ),
        "reference: aten._weight_int8pack_mm, bf16 activations": lambda i: pack(
            xb, data[i][0], data[i][2]
        ),
        "reference: aten._int_mm s8s8 (int8 activations, no quantization)": lambda i: torch._int_mm(
            xs8, data[i][0].t()
        ),
        "reference: aten._int_mm u8s8 (uint8 activations, no quantization)": lambda i: (
            torch._int_mm(xu8, data[i][0].t())
        ),
    }
    fns.update(refs)
    size.update(dict.fromkeys(refs, k * n))
    return fns, size


def table(k: int, n: int, fp32_bytes: float, rounds: int) -> None:
    copies = max(2, int(fp32_bytes // (4 * k * n)))
    fns, size = candidates(k, n, copies)
    with torch.inference_mode():
        for fn in fns.values():  # warm-up: first-call allocations and dispatch caches
            fn(0)
        ref = fns["fp32 F.linear"](0).float()
        errs = {
            name: (fn(0).float() - ref).abs().max().item() / ref.abs().max().item()
            for name, fn in fns.items()
            if "_int_mm" not in name  # no quantization step: its output is not comparable
        }
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(rounds):  # interleaved: load spikes hit every candidate alike
            for name, fn in fns.items():
                t = time.perf_counter()
                for i in range(copies):
                    fn(i)
                times[name].append((time.perf_counter() - t) / copies)
    base = statistics.median(times["fp32 F.linear"])
    print(
        f"\none {k}x{n} linear (in x out), batch 1, {copies} weight copies cycled "
        f"({copies * 4 * k * n / 1e6:.0f} MB in fp32), {torch.get_num_threads()} threads, "
        f"median of {rounds} interleaved rounds"
    )
    print("| op | us | x vs fp32 | weight GB/s | max err |")
    print("|---|---:|---:|---:|---:|")
    for name in fns:
        m = statistics.median(times[name])
        err = f"{errs[name]:.4f}" if name in errs else "-"
        print(f"| {name} | {m * 1e6:.0f} | {base / m:.2f}x | {size[name] / m / 1e9:.2f} | {err} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["768x768", "768x50257"], help="IN x OUT")
    p.add_argument("--bytes", type=float, default=500e6, help="fp32 weight bytes cycled")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        "command: python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    )
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average at start), {os.cpu_count()} cores")
    for shape in args.shapes:
        k, n = (int(v) for v in shape.split("x"))
        table(k, n, args.bytes, args.rounds)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average at the end)")


if __name__ == "__main__":
    main()
