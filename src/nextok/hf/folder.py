"""Whole Hugging Face model folders, out and in.

``export_hf`` writes what ``transformers`` and the Hub expect (config, weights, generation
config, tokenizer files, a model card), all mode 0644; ``read_hf_folder`` / ``import_hf`` read
a folder written by ``save_pretrained`` (one file or sharded, any dtype) into our model.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from nextok.console import say
from nextok.data.tokenization.tokenizer import (
    TOKENIZER_FILE,
    SpecialTokens,
    encodes_as_trained,
    hf_tokenizer_config,
    load_tokenizer_config,
    special_tokens,
)
from nextok.dtypes import as_dtype, dtype_name
from nextok.hf import weights as W
from nextok.hf.card import model_card
from nextok.hf.families import family_for_export, family_for_import
from nextok.hf.family import Family
from nextok.hf.generation import GENERATION_CONFIG, eos_ids, generation_out, read_generation
from nextok.hf.tokenizer_rebuild import class_built, probe_differs
from nextok.io import TEMP_MARK, atomic_write_text
from nextok.model import ModelConfig, Transformer

CONFIG = "config.json"


def is_hf_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file()


CARD = "README.md"
CARD_TAG = "tags: [nextok]"  # in every model card export_hf writes
EXPORT_FILES = {
    CONFIG,
    GENERATION_CONFIG,
    W.SINGLE,
    W.INDEX,
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    CARD,
}
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def check_export_target(out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse (one line) an ``out`` that is a file, or a non-empty folder that is not a previous
    export (only files export_hf writes, its ``config.json``, a nextok model card if any): the
    export would overwrite the user's own files (a ``README.md``). ``overwrite`` allows it."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} is a file; give a folder to export into")
    if overwrite or not out.is_dir():
        return
    names = {p.name for p in out.iterdir()}
    foreign = sorted(
        n for n in names if n not in EXPORT_FILES and not _SHARD.fullmatch(n) and TEMP_MARK not in n
    )
    card = out / CARD
    own_card = not card.is_file() or CARD_TAG in card.read_text(encoding="utf-8", errors="replace")
    if names and (foreign or CONFIG not in names or not own_card):
        held = ", ".join(foreign[:3] or ([CARD] if not own_card else sorted(names)[:3]))
        raise ValueError(
            f"out={out} is not empty and not a previous nextok export (it holds {held}); export "
            "into a new or empty folder, or pass overwrite=true to write over those files"
        )


# ---------------------------------------------------------------------- out
def export_hf(
    model: Transformer,
    out_dir: str | Path,
    tokenizer: Tokenizer | None = None,
    special: SpecialTokens | None = None,
    *,
    dtype: str = "fp32",
    max_shard_size: int | str | None = "5GB",
    family: str | None = None,
    prefer: str | None = None,
    card: dict[str, Any] | None = None,
    overwrite: bool = False,
    generation: dict[str, Any] | None = None,
) -> Path:
    """Write a publishable folder as ``family`` (the user's choice: used or refused), else as
    ``prefer`` (e.g. the imported family) when it fits, else the first family that fits.

    ``card`` adds facts to the model card (``tokens_seen``, ``val_loss``, ``val_step``,
    ``train_config``, ``source``). ``overwrite``: see :func:`check_export_target`.
    ``generation``: the imported model's ``generation_config.json`` (its sampling settings and EOS
    list are kept).
    """
    torch_dtype = as_dtype(dtype, "dtype")
    out_dir = Path(out_dir)
    check_export_target(out_dir, overwrite)
    cfg = model.config
    fam = family_for_export(cfg, family, prefer, tokenizer)
    tensors = W.from_ours(dict(model.state_dict()), fam.rows(cfg))
    out_dir.mkdir(parents=True, exist_ok=True)  # after the refusals: no empty folder left behind
    if tokenizer is not None and special is None:
        special = special_tokens(tokenizer)
    ids = _token_ids(tokenizer, special)
    ids["eos_token_id"] = eos_ids(generation, ids["eos_token_id"])
    hf_cfg = {**fam.config_out(cfg), **ids, "torch_dtype": dtype_name(torch_dtype)}
    W.write_tensors(tensors, out_dir, torch_dtype, W.parse_size(max_shard_size))
    W.write_json(out_dir / CONFIG, hf_cfg)
    W.write_json(out_dir / GENERATION_CONFIG, generation_out(ids, cfg.block_size, generation))
    if tokenizer is not None and special is not None:
        _write_tokenizer(tokenizer, special, out_dir, cfg.block_size)
    text = model_card(
        cfg,
        fam.model_type,
        fam.architecture,
        model.num_parameters(),
        dtype_name(torch_dtype),
        card or {},
    )
    atomic_write_text(out_dir / CARD, text, W.FILE_MODE)
    return out_dir


def _token_ids(tokenizer: Tokenizer | None, special: SpecialTokens | None) -> dict[str, int | None]:
    if tokenizer is None or special is None:
        return {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    eos = special.eos_id(tokenizer)
    bos = tokenizer.token_to_id(special.bos) if special.bos is not None else None
    pad = tokenizer.token_to_id(special.pad or special.eos)
    # without a BOS of its own, a nextok model starts documents after the EOS separator
    return {"bos_token_id": eos if bos is None else bos, "eos_token_id": eos, "pad_token_id": pad}


def _write_tokenizer(tok: Tokenizer, special: SpecialTokens, out_dir: Path, max_len: int) -> None:
    tok = encodes_as_trained(tok, special)
    atomic_write_text(out_dir / TOKENIZER_FILE, tok.to_str(pretty=True), W.FILE_MODE)
    W.write_json(out_dir / "tokenizer_config.json", hf_tokenizer_config(special, max_len))
    W.write_json(
        out_dir / "special_tokens_map.json",
        {k: v for k, v in hf_tokenizer_config(special).items() if k.endswith("_token") and v},
    )


# ---------------------------------------------------------------------- in
@dataclass
class HFModel:
    """What a Hugging Face folder holds, in our terms."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    family: str
    tokenizer: Tokenizer | None
    special: SpecialTokens | None
    generation: dict[str, Any] | None = None  # generation_config.json, carried to export


def read_config(
    folder: str | Path, block_size: int | None = None, dropout: float | None = None
) -> tuple[ModelConfig, Family]:
    folder = Path(folder)
    f = folder / CONFIG
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found (expected a Hugging Face model folder)")
    try:
        c = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None
    fam = family_for_import(c, str(f))
    return fam.config_in(c, str(f), block_size, dropout), fam


def read_hf_folder(
    folder: str | Path,
    *,
    block_size: int | None = None,
    dropout: float | None = None,
    dtype: torch.dtype | None = torch.float32,
    with_tokenizer: bool = True,
    eos: str | None = None,
    add_bos: bool | None = None,
) -> HFModel:
    """Config + our state dict (+ tokenizer and its special tokens when the folder has one).

    ``block_size`` may shorten the context (a learned position table is cut to it);
    ``dropout`` replaces the file's dropout fields (0 for inference); ``eos`` / ``add_bos``
    (the user's ``data.eos_token`` / ``data.add_bos``) override the tokenizer config.
    """
    folder = Path(folder)
    cfg, fam = read_config(folder, block_size, dropout)
    hf = W.read_tensors(folder, dtype)
    sd = W.to_ours(hf, fam, fam.rows(cfg), f"{folder} (model_type {fam.model_type})")
    if "pos_emb.weight" in sd and sd["pos_emb.weight"].shape[0] > cfg.block_size:
        sd["pos_emb.weight"] = sd["pos_emb.weight"][: cfg.block_size].clone()
    tok = special = None
    if with_tokenizer and (folder / TOKENIZER_FILE).is_file():
        tok = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        if tok.get_vocab_size() > cfg.vocab_size:
            raise ValueError(
                f"{folder}: tokenizer.json has {tok.get_vocab_size()} tokens but config.json "
                f"vocab_size={cfg.vocab_size}: the ids past it have no embedding"
            )
        config = load_tokenizer_config(folder)
        special = special_tokens(tok, config, eos=eos, add_bos=add_bos, where=str(folder))
        _warn_if_rebuilt(folder, fam.model_type, config, tok)
    return HFModel(cfg, sd, fam.model_type, tok, special, read_generation(folder))


def _warn_if_rebuilt(folder: Path, model_type: str, config: dict, tok: Tokenizer) -> None:
    """One line when transformers' AutoTokenizer would encode this folder's text differently
    (nextok runs tokenizer.json as written: what the model was trained with)."""
    cls = class_built(model_type, config, tok)
    text = probe_differs(tok, cls) if cls is not None else None
    if text is not None:
        say(
            f"warning: {folder}: transformers' AutoTokenizer rebuilds this tokenizer as {cls}, "
            f"which encodes some texts differently from tokenizer.json (e.g. {text!r}); nextok "
            "uses tokenizer.json as written (what the model was trained with), and exports it so",
            file=sys.stderr,
        )


def build_model(cfg: ModelConfig, state_dict: dict[str, torch.Tensor], where: str) -> Transformer:
    """A Transformer holding exactly ``state_dict`` (built on the meta device: no random init)."""
    sd = dict(state_dict)
    if cfg.tie_embeddings:
        sd["lm_head.weight"] = sd["tok_emb.weight"]
    with torch.device("meta"):
        model = Transformer(cfg)
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(
            f"{where}: weights do not fit the config: {' '.join(first[1:2] or first)}"
        ) from None
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    return model


def import_hf(
    folder: str | Path,
    *,
    block_size: int | None = None,
    dropout: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Transformer:
    """Load a Hugging Face folder (Llama / Mistral / Qwen2 / Qwen3 / GPT-2) as a Transformer."""
    m = read_hf_folder(
        folder, block_size=block_size, dropout=dropout, dtype=dtype, with_tokenizer=False
    )
    return build_model(m.config, m.state_dict, str(folder)).eval()
