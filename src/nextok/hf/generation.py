"""``generation_config.json`` both ways: an imported model's generation defaults (sampling
settings, a list of EOS ids) travel with it and are written back on export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GENERATION_CONFIG = "generation_config.json"
# what export computes itself (the run's tokens and context); everything else is carried
OURS = ("bos_token_id", "eos_token_id", "pad_token_id", "max_length", "transformers_version")


def read_generation(folder: str | Path) -> dict[str, Any] | None:
    """The folder's generation defaults (None without the file)."""
    f = Path(folder) / GENERATION_CONFIG
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{f}: expected a JSON object")
    return data


def eos_ids(source: dict[str, Any] | None, eos: int | None) -> int | list[int] | None:
    """The run's EOS id, or the source's list of EOS ids when it holds the run's EOS (generation
    stops on any of them, e.g. Llama 3 Instruct's ``<|eot_id|>``)."""
    listed = (source or {}).get("eos_token_id")
    if eos is not None and isinstance(listed, list) and eos in listed:
        return list(listed)
    return eos


def generation_out(
    ids: dict[str, Any], block_size: int, source: dict[str, Any] | None
) -> dict[str, Any]:
    """``generation_config.json``: the source's settings, the run's token ids and context."""
    carried = {k: v for k, v in (source or {}).items() if k not in OURS}
    return {**carried, **ids, "max_length": block_size}
