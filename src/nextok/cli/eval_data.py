"""Which data config ``nextok-eval`` scores a checkpoint on (``data_from``).

``ckpt`` (default): the data config the checkpoint's training run recorded (``nextok.data_config``),
so "val" is the run's own held-out split (its source, seed, ``val_fraction``, streaming hash split,
mixture); only the keys that say how to read on this machine come from the ``data`` group. A
checkpoint without one (written before it was recorded, or a Hugging Face folder) falls back to the
``data`` group and says so. ``config``: the ``data`` group, whatever the checkpoint trained on.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

# Taken from the ``data`` group even with data_from=ckpt: set by nextok-eval itself (the checkpoint's
# tokenizer and block size, max_batches) or where/how this machine reads; none defines the documents.
LOCAL_KEYS = frozenset(
    {
        "tokenizer_path",
        "vocab_size",
        "block_size",
        "run_dir",
        "max_val_batches",
        "cache_dir",
        "cache_shard_tokens",
        "num_workers",
        "pin_memory",
        "encode_batch_docs",
    }
)
DATA_FROM = ("ckpt", "config")


def recorded_data_config(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The training run's resolved ``data`` config stored in a checkpoint, or None."""
    data = meta.get("data_config")
    if data is None:  # written before data_config: the run's saved config has it too
        train = meta.get("train_config")
        data = train.get("data") if isinstance(train, dict) else None
    return data if isinstance(data, dict) and data else None


def split_overrides(overrides: list[str]) -> list[str]:
    """The command-line overrides that would change which documents the data config reads."""
    out = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key == "data" or (key.startswith("data.") and key[5:].split(".")[0] not in LOCAL_KEYS):
            out.append(item)
    return out


def describe(data: dict[str, Any] | DictConfig) -> str:
    """A short summary of what defines a data config's held-out split."""
    if data.get("sources"):
        return "mixture of " + ", ".join(str(k) for k in data["sources"])
    keys = ("source", "path", "name", "val_split", "val_fraction", "seed", "streaming")
    parts = []
    for k in keys:
        v = data.get(k)
        if v is not None:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def choose_data(
    cfg: DictConfig, meta: dict[str, Any], ckpt: str, overrides: list[str], group: str | None
) -> str:
    """Set ``cfg.data`` as ``cfg.data_from`` asks (in place); return the line saying which it is.

    ``overrides``: the command line's overrides (explicit ``data=``/``data.*`` ones are refused
    with data_from=ckpt when the checkpoint records its data config); ``group``: the ``data``
    group's name, for the message."""
    mode = cfg.get("data_from", "ckpt")
    if mode not in DATA_FROM:
        raise ValueError(f"data_from must be one of {list(DATA_FROM)}, got {mode!r}")
    name = f"data={group}" if group else "the data group"
    if mode == "config":
        return f"data: {name} ({describe(cfg.data)}) (data_from=config)"
    recorded = recorded_data_config(meta)
    if recorded is None:
        return (
            f"data: {ckpt} has no recorded data config (older checkpoint or Hugging Face folder): "
            f"using {name} ({describe(cfg.data)}); its val split may not be the one the model "
            "was trained with"
        )
    bad = split_overrides(overrides)
    if bad and bad[0].split("=", 1)[0].lstrip("+~") in ("data.batch_size", "data.val_batch_size"):
        raise ValueError(f"{bad[0]}: nextok-eval takes the batch size as batch_size=N")
    if bad:
        raise ValueError(
            f"{bad[0]}: with data_from=ckpt (the default) {ckpt}'s recorded training data config "
            "is used; add data_from=config to evaluate on the data group instead"
        )
    group_values = OmegaConf.to_container(cfg.data, resolve=False)
    data = dict(recorded)
    data.update({k: v for k, v in group_values.items() if k in LOCAL_KEYS})
    with open_dict(cfg):
        cfg.data = OmegaConf.create(data)
    return f"data: the training data config recorded in {ckpt} ({describe(data)})"
