"""``nextok-eval``: loss, perplexity, bits per byte and task accuracies of checkpoints.

Uses each checkpoint's tokenizer and model config and, for the documents, the data config its
training run recorded (so "val" is that run's held-out split; ``data_from=config``: the ``data``
config group instead, to score a model on any corpus: :mod:`nextok.cli.eval_data`); several
checkpoints give one table (``json=true``: JSON lines instead; ``out=FILE``: a JSON file)::

    nextok-eval ckpt=runs/default/<time>/checkpoints/last.ckpt
    nextok-eval ckpt='[a.ckpt,b.ckpt]' tasks='[stdlib_next_line,hellaswag]'
    nextok-eval ckpt=PATH data_from=config data=stdlib split=train max_batches=20 out=eval.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from nextok.cli._conf import conf_dir
from nextok.cli.errors import one_line_errors

USAGE = (
    "usage: nextok-eval ckpt=PATH (or ckpt='[a.ckpt,b.ckpt]') [tasks='[...]'] [json=true] "
    "[data_from=config data=NAME]"
)


def checkpoints(cfg: DictConfig) -> list[str]:
    """``ckpt`` as a list: one path, or a list of paths."""
    ckpt = cfg.get("ckpt")
    if ckpt is None:
        raise ValueError(f"ckpt= is required; {USAGE}")
    paths = [ckpt] if isinstance(ckpt, str) else [str(c) for c in ckpt]
    if not paths:
        raise ValueError("ckpt: give a checkpoint path or a list of them")
    return paths


def evaluate(
    cfg: DictConfig,
    ckpt: str | None = None,
    overrides: list[str] | None = None,
    data_group: str | None = None,
) -> dict:
    """Scores of one checkpoint (``ckpt``, default: ``cfg.ckpt``). ``overrides``/``data_group``:
    the command line's overrides and the ``data`` group's name (see :func:`choose_data`)."""
    with tempfile.TemporaryDirectory(prefix="nextok-eval-") as scratch:
        cfg = cfg.copy()
        with open_dict(cfg):
            cfg.ckpt = ckpt or checkpoints(cfg)[0]
        return _evaluate(cfg, Path(scratch), overrides or [], data_group)


def _evaluate(cfg: DictConfig, scratch: Path, overrides: list[str], data_group: str | None) -> dict:
    import torch
    from hydra.utils import instantiate

    from nextok.checkpoint import load_checkpoint
    from nextok.cli.eval_data import choose_data
    from nextok.console import say
    from nextok.data.tokenization.tokenizer import hf_tokenizer_config, save_tokenizer
    from nextok.dtypes import as_dtype
    from nextok.evals.stdlib_task import check_task_specs
    from nextok.generation.quantize import check_quantize, quantize_model
    from nextok.hf import is_hf_folder
    from nextok.io import atomic_write_text
    from nextok.metrics import LossTally, summarize, token_byte_lengths
    from nextok.model import document_ids

    if cfg.split not in ("val", "train"):
        raise ValueError(f"split must be 'val' or 'train', got {cfg.split!r}")
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = as_dtype(cfg.dtype, "dtype")
    quantize = check_quantize(cfg.get("quantize"))
    loaded = load_checkpoint(
        cfg.ckpt,
        device=device,
        dtype=dtype,
        block_size=cfg.model.block_size,
        verify=bool(cfg.get("verify", True)),
        # a folder's special tokens (a .ckpt records its own; data.* then shapes the eval data)
        **(
            {"eos_token": cfg.data.get("eos_token"), "add_bos": cfg.data.get("add_bos")}
            if is_hf_folder(cfg.ckpt)
            else {}
        ),
    )
    model, mcfg = loaded.model, loaded.config
    quantize_model(model, quantize, device)
    # the held-out split of the run's own data config (tasks like stdlib_next_line follow it)
    data_line = choose_data(cfg, loaded.meta, str(cfg.ckpt), overrides, data_group)
    say(data_line, file=_info(cfg))
    if cfg.get("tasks"):  # a task must hold out what this data config holds out (mixtures too)
        check_task_specs(
            OmegaConf.to_container(cfg.tasks, resolve=True),
            OmegaConf.to_container(cfg.data, resolve=True),
        )

    # The checkpoint's tokenizer, via a file, since the datamodule takes a tokenizer path.
    tok_file = scratch / "tokenizer.json"
    save_tokenizer(loaded.tokenizer, tok_file)
    atomic_write_text(
        scratch / "tokenizer_config.json", json.dumps(hf_tokenizer_config(loaded.special))
    )
    with open_dict(cfg):
        cfg.model.block_size = cfg.model.block_size or mcfg.block_size
        cfg.run_dir = str(scratch)
        cfg.data.tokenizer_path = str(tok_file)
        cfg.data.vocab_size = loaded.tokenizer.get_vocab_size()
        if cfg.batch_size:
            cfg.data.batch_size = cfg.batch_size
            cfg.data.val_batch_size = cfg.batch_size
        if cfg.split == "val":
            # max_batches=null: the whole held-out split, as the end of a training run reports it
            # (data.max_val_batches only bounds the cheap periodic validations during training)
            cfg.data.max_val_batches = cfg.max_batches
    try:
        dm = instantiate(cfg.data)
    except Exception as err:  # noqa: BLE001 - a record from an older nextok may not build
        if "recorded in" not in data_line:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{cfg.ckpt}: its recorded training data config does not build with this nextok "
            f"({first}); add data_from=config to evaluate on the data group instead"
        ) from err
    dm.prepare_data()
    dm.setup("fit" if cfg.split == "train" else "validate")
    dm.validate_model(mcfg.vocab_size, mcfg.block_size)
    loader = dm.val_dataloader() if cfg.split == "val" else dm.train_dataloader()
    max_batches = (
        cfg.max_batches if cfg.max_batches is not None else (None if cfg.split == "val" else 100)
    )

    loaders = loader if isinstance(loader, list) else [loader]
    names = list(getattr(dm, "val_names", [])) if cfg.split == "val" else []
    token_bytes = torch.from_numpy(token_byte_lengths(loaded.tokenizer))
    tally = LossTally(len(loaders), token_bytes, device)
    # model.doc_mask: scored as it was trained, attention inside each packed document
    doc_start = loaded.special.doc_start_id(loaded.tokenizer) if mcfg.doc_mask else None
    t0 = time.perf_counter()
    with torch.inference_mode():
        for g, group in enumerate(loaders):
            for i, batch in enumerate(group):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = batch[0].to(device), batch[1].to(device)
                docs = None if doc_start is None else document_ids(x, doc_start)
                _, loss = model(x, y, doc_ids=docs)
                tally.add(g, loss, y)
    sums = tally.sums.cpu()
    total = summarize(sums.sum(dim=1))
    if not total:
        raise ValueError(f"the {cfg.split} split produced no batches to evaluate")
    result = {
        "ckpt": str(cfg.ckpt),
        "quantize": quantize,
        "split": cfg.split,
        "loss": total["loss"],
        "perplexity": total["ppl"],
        "bpb": total["bpb"],
        "tokens": int(total["tokens"]),
        "bytes": int(total["bytes"]),
        "block_size": int(cfg.model.block_size),
        "tokens_seen_in_training": loaded.meta.get("tokens_seen"),
        "data": data_line.removeprefix("data: "),  # which split: rows of one table may differ
    }
    for g, name in enumerate(names if len(names) == len(loaders) > 1 else []):
        part = summarize(sums[:, g])
        result[f"loss/{name}"], result[f"bpb/{name}"] = part["loss"], part["bpb"]
    result["tasks"] = _tasks(cfg, model, loaded, device)
    result["seconds"] = time.perf_counter() - t0
    return result


def _info(cfg: DictConfig):
    """Where informational lines go: stderr when stdout is JSON."""
    return sys.stderr if cfg.json else sys.stdout


def _tasks(cfg: DictConfig, model, loaded, device) -> dict:
    """Downstream task scores (``tasks`` config: name -> spec); single process."""
    from nextok.evals import (
        context_prefix,
        document_start,
        evaluate_task,
        load_task,
        scoring_options,
    )

    tasks = cfg.get("tasks")
    specs = OmegaConf.to_container(tasks, resolve=True) if tasks else {}
    out = {}
    for name, spec in specs.items():
        res = evaluate_task(
            model,
            loaded.tokenizer,
            load_task(name, spec),
            block_size=loaded.config.block_size,
            batch_size=int(cfg.task_batch_size),
            device=device,
            start_ids=document_start(loaded.tokenizer, loaded.special),
            prefix_ids=context_prefix(loaded.tokenizer, loaded.special),
            **scoring_options(name, spec),
        )
        out[name] = res.as_dict()
    return out


def table(results: list[dict]) -> str:
    """One row per checkpoint: loss, ppl, bpb (overall and per source) and task accuracies."""
    from nextok.evals import METRICS

    cols = ["loss", "perplexity", "bpb"]
    cols += sorted({k for r in results for k in r if k.startswith(("loss/", "bpb/"))})
    tasks = sorted({t for r in results for t in r.get("tasks", {})})
    # acc_pmi only for tasks that computed it (their ``pmi`` option)
    task_cols = [
        (t, m)
        for t in tasks
        for m in METRICS
        if m != "acc_pmi" or any(r.get("tasks", {}).get(t, {}).get(m) is not None for r in results)
    ]
    head = ["ckpt", *cols] + [f"{t}/{m}" for t, m in task_cols]
    rows = []
    for r in results:
        label = r["ckpt"] + (f" ({r['quantize']})" if r.get("quantize") else "")
        row = [label] + [f"{r[c]:.4f}" if c in r else "-" for c in cols]
        for t, m in task_cols:
            v = r.get("tasks", {}).get(t, {}).get(m)
            row.append(f"{v:.4f}" if v is not None else "-")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*row) for row in [head, *rows])


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides, group = list(hc.overrides.task), hc.runtime.choices.get("data")
    with one_line_errors("nextok-eval"):
        results = [evaluate(cfg, c, overrides, group) for c in checkpoints(cfg)]
    if cfg.json:
        for r in results:
            print(json.dumps(r))
    else:
        r0 = results[0]
        scope = "" if cfg.max_batches is None else f" (its first {cfg.max_batches} batches)"
        if cfg.max_batches is None and cfg.split == "train":
            scope = " (its first 100 batches)"  # the train split's default bound
        print(
            f"split {r0['split']}{scope}: {r0['tokens']} tokens, {r0['bytes']} bytes, "
            f"block {r0['block_size']}"
        )
        print(table(results))
    if cfg.out:
        payload = results[0] if len(results) == 1 else results
        from nextok.io import atomic_write_text

        atomic_write_text(cfg.out, json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
