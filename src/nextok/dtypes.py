"""One home for dtype names: every config key and CLI flag that takes a dtype parses it here."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "16": torch.float16,
}


def as_dtype(value: str | torch.dtype | None, key: str = "dtype") -> torch.dtype | None:
    """``"bfloat16"``/``"bf16"``/``"torch.bfloat16"``/``torch.bfloat16`` -> ``torch.bfloat16``.

    None stays None (the caller's default); an unknown name is a ``ValueError`` naming ``key``.
    """
    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"{key}: unknown dtype {value!r}; use one of {sorted(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the name ``config.json`` files use)."""
    name = str(dtype).removeprefix("torch.")
    if DTYPES.get(name) is not dtype:
        raise ValueError(f"dtype {dtype} has no name in nextok (known: {sorted(DTYPES)})")
    return name
