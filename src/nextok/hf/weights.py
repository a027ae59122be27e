"""Safetensors in and out: one file or shards (``model.safetensors.index.json``), any dtype.

Reading maps the HF tensors onto our names through a family's rows and checks that every stored
tensor is used and every parameter of ours is filled. Writing shards above a size, replaces each
file atomically (a crash leaves the old file or the new one, never half of one; the files of
another layout are removed only after the new ones are complete; the folder as a whole is not
atomic: export into a new folder for that) and stamps the files 0644 (publishable as they are).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nextok.hf.family import Family, Row
from nextok.io import atomic_save, atomic_write_text

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
FILE_MODE = 0o644


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (sharded or not)."""
    index = folder / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index}: not a safetensors index (no 'weight_map'): {e}") from None
        files = [folder / f for f in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names missing shard(s): {missing}")
        return files
    if (folder / SINGLE).is_file():
        return [folder / SINGLE]
    if any(folder.glob("pytorch_model*.bin")):
        raise ValueError(
            f"{folder} holds only pytorch_model*.bin weights; nextok reads safetensors only (pickle "
            "files can run code). Convert it once with transformers: "
            "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR2)"
        )
    raise FileNotFoundError(f"{folder} has neither {SINGLE} nor {INDEX}")


def read_tensors(folder: Path, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Every tensor of every shard, converted to ``dtype`` (None: as stored)."""
    out: dict[str, torch.Tensor] = {}
    for f in weight_files(folder):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a dict
                if name in out:
                    raise ValueError(f"{f}: tensor {name} appears in more than one shard")
                t = st.get_tensor(name)
                out[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return out


def to_ours(
    hf: dict[str, torch.Tensor], family: Family, rows: list[Row], where: str
) -> dict[str, torch.Tensor]:
    """Our state dict from HF tensors; refuses unused tensors and unfilled rows by name."""
    if not any(k.startswith(family.prefix) for k in hf):  # saved from the base model class
        hf = {(k if k == "lm_head.weight" else family.prefix + k): v for k, v in hf.items()}
    used: set[str] = set()
    sd: dict[str, torch.Tensor] = {}
    for ours, theirs, how, sizes in rows:
        missing = [k for k in theirs if k not in hf]
        if missing:
            raise ValueError(f"{where} lacks tensor(s) {missing[:3]} (needed for {ours})")
        parts = [hf[k] for k in theirs]
        if how == "split":
            got = tuple(p.shape[0] for p in parts)
            if got != sizes:
                raise ValueError(f"{where}: {theirs} have {got} rows, expected {sizes}")
            sd[ours] = torch.cat(parts)
        elif how == "experts":  # per-expert tensors -> one (E, ...) bank
            g = max(1, len(sizes))
            sd[ours] = torch.stack([torch.cat(parts[i : i + g]) for i in range(0, len(parts), g)])
        elif how == "zeros":  # a buffer the format does not have (MoE expert_bias)
            sd[ours] = torch.zeros(sizes)
        elif how == "t":
            sd[ours] = parts[0].t().contiguous()
        else:
            sd[ours] = parts[0]
        used.update(theirs)
    _check_tied_head(hf, sd, rows, used, where)
    left = sorted(k for k in set(hf) - used if not family.ignorable(k))
    if left:
        raise ValueError(
            f"{where}: {len(left)} tensor(s) the config does not account for, e.g. {left[:3]} "
            "(a silent drop would change the model)"
        )
    for k in set(hf) - used:
        _check_buffer(k, hf[k], where)
    return sd


def _check_tied_head(hf, sd, rows, used, where) -> None:
    """A tied model's file may also carry lm_head.weight: fine only if it equals the embedding."""
    if "lm_head.weight" in hf and not any(r[0] == "lm_head.weight" for r in rows):
        if not torch.equal(hf["lm_head.weight"], sd["tok_emb.weight"]):
            raise ValueError(
                f"{where}: tie_word_embeddings is true but lm_head.weight differs from the "
                "embedding (set tie_word_embeddings=false in config.json if they are separate)"
            )
        used.add("lm_head.weight")


def _check_buffer(name: str, t: torch.Tensor, where: str) -> None:
    if name.endswith("attn.bias"):  # GPT-2's causal mask: lower-triangular ones
        m = t.reshape(t.shape[-2], t.shape[-1]).bool()
        if not torch.equal(m, torch.ones_like(m).tril()):
            raise ValueError(f"{where}: {name} is not a causal mask; nextok attends causally")
    # masked_bias (a -1e4 fill value) and rotary_emb.inv_freq (a non-persistent buffer that
    # transformers itself recomputes from the config on load) carry nothing the config does not.


def from_ours(sd: dict[str, torch.Tensor], rows: list[Row]) -> dict[str, torch.Tensor]:
    """HF tensors from our state dict (the rows read backwards)."""
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, how, sizes in rows:
        if how == "zeros_out":  # an HF tensor with no counterpart of ours: zero computes the same
            out[theirs[0]] = torch.zeros(sizes)
            continue
        t = sd[ours].detach().cpu()
        if how == "zeros":
            if t.any():
                raise ValueError(
                    f"{ours} is non-zero (aux-loss-free expert balancing) and the Hugging Face "
                    "format has no per-expert routing bias: this model cannot be exported exactly"
                )
            continue
        if how == "experts":
            parts = [q for e in t for q in (e.split(list(sizes)) if sizes else [e])]
        else:
            parts = t.split(list(sizes)) if how == "split" else [t.t() if how == "t" else t]
        out.update({name: p.contiguous() for name, p in zip(theirs, parts, strict=True)})
    return out


def parse_size(size: int | str | None) -> int | None:
    """Bytes from ``2GB``, ``500MB``, ``10KB`` (decimal units, as transformers uses) or an int."""
    if size is None or isinstance(size, int):
        return size
    s = str(size).strip().upper()
    for unit, mult in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("B", 1)):
        if s.endswith(unit):
            try:
                return int(float(s[: -len(unit)]) * mult)
            except ValueError:
                break
    raise ValueError(f"max_shard_size must look like 5GB, 500MB or a number of bytes, got {size!r}")


def write_tensors(
    tensors: dict[str, torch.Tensor], out_dir: Path, dtype: torch.dtype, max_shard_bytes: int | None
) -> list[Path]:
    """``model.safetensors``, or shards + index when the total exceeds ``max_shard_bytes``."""
    tensors = {
        k: v.to(dtype).contiguous() if v.is_floating_point() else v for k, v in tensors.items()
    }
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if max_shard_bytes is not None and shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += n
    if len(shards) == 1:
        names = [SINGLE]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    paths = []
    for name, shard in zip(names, shards, strict=True):
        paths.append(out_dir / name)
        atomic_save(
            paths[-1],
            lambda tmp, s=shard: save_file(s, str(tmp), metadata={"format": "pt"}),
            mode=FILE_MODE,
        )
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {
            "metadata": {"total_size": total},
            "weight_map": {k: n for n, s in zip(names, shards, strict=True) for k in s},
        }
        paths.append(write_json(out_dir / INDEX, index))
    # only now (the new files complete) drop another layout's files a re-export would leave behind
    for stale in [*out_dir.glob("model-*-of-*.safetensors"), out_dir / INDEX, out_dir / SINGLE]:
        if stale not in paths:
            stale.unlink(missing_ok=True)
    return paths


def write_json(path: Path, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", FILE_MODE)
