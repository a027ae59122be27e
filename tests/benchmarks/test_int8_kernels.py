"""benchmarks/int8_kernels.py: every torchao int8 configuration and the reference kernels get a
row (or a one-line reason), and the hand-written reference swap computes what torchao's int8
linear computes."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.generation import tiny_model

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="needs torchao")


def test_prints_a_row_per_candidate(tmp_path):
    args = ["--shapes", "64x96", "--bytes", "1e5", "--rounds", "1", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "int8_kernels.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("command: python ") and "one 64x96 linear (in x out), batch 1" in out
    rows = dict(
        re.findall(r"^\| (.+?) \| \d+ \| ([\d.]+)x \| [\d.]+ \| (?:[\d.]+|-) \|$", out, re.M)
    )
    assert rows["fp32 F.linear"] == "1.00"
    for name in (
        "Int8WeightOnlyConfig() (quantize=int8), fp32 activations",
        "Int8WeightOnlyConfig() (quantize=int8), bf16 activations",
        "Int8DynamicActivationInt8WeightConfig() (quantize=w8a8), fp32 activations",
        "IntxWeightOnlyConfig(int8, PerAxis(0)), bf16 activations",
        "reference: aten._weight_int8pack_mm, bf16 activations",
        "reference: aten._int_mm u8s8 (uint8 activations, no quantization)",
    ):
        assert name in rows, out
    # torchao's C++ CPU kernels are not part of its wheel here: a reason, not a row
    opaque = "Int8DynamicActivationIntxWeightConfig(int8, opaque_torchao_auto), fp32 activations"
    assert opaque in rows or f"\n{opaque}: not available: " in out


def test_int8pack_reference_matches_torchao_int8():
    sys.path.insert(0, str(BENCH))
    try:
        from int8_kernels import use_int8pack
    finally:
        sys.path.remove(str(BENCH))
    from nextok.generation import quantize_model

    idx = torch.randint(0, 128, (2, 7))
    for dtype in (torch.float32, torch.bfloat16):
        model = quantize_model(tiny_model(vocab_size=128).to(dtype), "int8")
        with torch.no_grad():
            want, _ = model(idx)
            got, _ = use_int8pack(model)(idx)
        assert got.dtype == want.dtype
        tol = 1e-4 if dtype == torch.float32 else 0.05
        torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
