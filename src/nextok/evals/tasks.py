"""Multiple-choice tasks: ``(context, choices, gold index)`` examples from a task spec.

A spec is a plain dict (``conf/tasks/<name>.yaml``). Either ``kind: stdlib_next_line`` (built
offline, see :mod:`nextok.evals.stdlib_task`) or a Hugging Face dataset with a field mapping::

    path: allenai/ai2_arc        # hub dataset id (used when data_files is null)
    name: ARC-Easy               # hub config
    split: test
    data_files: null             # offline: local .jsonl/.json/.parquet files with the same fields
    context: "Question: {question}\\nAnswer:"   # str.format over the row's fields
    choices: choices.text        # a field (dotted path) holding a list, or a list of fields
    gold: answerKey              # field with the gold index, or a label ...
    gold_labels: choices.label   # ... looked up in this list field
    choice_prefix: " "           # put before every choice (the continuation scored)
    preprocess: null             # hellaswag: lm-evaluation-harness's text clean-up
    limit: null                  # first N examples only (labelled as a subset when reported)
    pmi: false                   # also report acc_pmi (one more forward per distinct choice)

``pmi`` (any kind) is a scoring option, not part of the examples: :func:`scoring_options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HF_KEYS = (
    "path",
    "name",
    "split",
    "data_files",
    "context",
    "choices",
    "gold",
    "gold_labels",
    "choice_prefix",
    "preprocess",
    "limit",
)


SCORING_KEYS = ("pmi",)  # how a task is scored (nextok.evals.scoring), not how it is built
RUN_KEYS = ("corpus_only",)  # when a training run scores it (nextok.evals.stdlib_task)


@dataclass(frozen=True)
class MCExample:
    """One multiple-choice item: the model scores ``context + choices[j]`` for each ``j``.

    ``prefix``: the separator every choice starts with (``choice_prefix``, lm-eval's
    ``target_delimiter``), not counted in ``acc_norm``'s length."""

    context: str
    choices: tuple[str, ...]
    gold: int
    prefix: str = ""


def _field(row: dict, dotted: str, task: str) -> Any:
    value: Any = row
    for part in str(dotted).split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"task {task}: row has no field {dotted!r} (fields: {sorted(row)})")
        value = value[part]
    return value


def _hellaswag_clean(text: str) -> str:
    """lm-evaluation-harness's HellaSwag preprocessing (WikiHow artefacts)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_row(row: dict) -> dict:
    row = dict(row)
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    row["ctx"] = _hellaswag_clean(row["activity_label"] + ": " + ctx)
    row["endings"] = [_hellaswag_clean(e) for e in row["endings"]]
    return row


PREPROCESS = {"hellaswag": _hellaswag_row}


def _load_rows(task: str, spec: dict) -> Any:
    import datasets

    files = spec.get("data_files")
    if files:
        items = [files] if isinstance(files, str) else list(files)
        for f in items:
            if not any(c in str(f) for c in "*?[") and not Path(str(f)).exists():
                raise FileNotFoundError(f"task {task}: data_files not found: {f}")
        ext = Path(str(items[0])).suffix.lower()
        fmt = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(ext)
        if fmt is None:
            raise ValueError(
                f"task {task}: data_files must be .jsonl/.json/.parquet (got {items[0]})"
            )
        return datasets.load_dataset(fmt, data_files={"data": items}, split="data")
    if not spec.get("path"):
        raise ValueError(f"task {task}: set path (a hub dataset id) or data_files (local files)")
    try:
        return datasets.load_dataset(
            spec["path"], spec.get("name"), split=spec.get("split", "test")
        )
    except Exception as e:  # noqa: BLE001 - one line naming the task and the way out
        raise ValueError(
            f"task {task}: could not load {spec['path']!r} ({spec.get('name')}, split "
            f"{spec.get('split')}): {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
            f"offline, point tasks.{task}.data_files at a local jsonl/parquet copy"
        ) from e


def hf_examples(task: str, spec: dict) -> list[MCExample]:
    """Examples of a Hugging Face multiple-choice dataset through the spec's field mapping."""
    bad = sorted(set(spec) - set(HF_KEYS) - {"kind"})
    if bad:
        raise ValueError(f"task {task}: unknown key(s) {bad}; expected some of {list(HF_KEYS)}")
    for key in ("context", "choices", "gold"):
        if spec.get(key) is None:
            raise ValueError(f"task {task}: '{key}' is required in the field mapping")
    prep = spec.get("preprocess")
    if prep is not None and prep not in PREPROCESS:
        raise ValueError(f"task {task}: unknown preprocess {prep!r} (known: {sorted(PREPROCESS)})")
    rows = _load_rows(task, spec)
    limit = spec.get("limit")
    prefix = spec.get("choice_prefix", " ") or ""
    out = []
    for i, row in enumerate(rows):
        if limit is not None and i >= int(limit):
            break
        if prep:
            row = PREPROCESS[prep](row)
        try:
            context = str(spec["context"]).format(**row)
        except KeyError as e:
            raise ValueError(f"task {task}: context template names missing field {e}") from e
        fields = spec["choices"]
        if isinstance(fields, str):
            choices = [str(c) for c in _field(row, fields, task)]
        else:
            choices = [str(_field(row, f, task)) for f in fields]
        gold_raw = _field(row, spec["gold"], task)
        if spec.get("gold_labels"):
            labels = [str(x) for x in _field(row, spec["gold_labels"], task)]
            if str(gold_raw) not in labels:
                raise ValueError(f"task {task}: row {i}: gold {gold_raw!r} not in {labels}")
            gold = labels.index(str(gold_raw))
        else:
            gold = int(gold_raw)
        if not 0 <= gold < len(choices) or len(choices) < 2:
            raise ValueError(f"task {task}: row {i}: gold {gold} for {len(choices)} choices")
        out.append(MCExample(context, tuple(prefix + c for c in choices), gold, prefix))
    if not out:
        raise ValueError(f"task {task}: no examples")
    return out


def scoring_options(task: str, spec: dict | None) -> dict[str, Any]:
    """Keyword arguments of :func:`nextok.evals.evaluate_task` that a task spec sets (``pmi``)."""
    pmi = (spec or {}).get("pmi", False)
    if pmi is None:
        pmi = False
    if not isinstance(pmi, bool):
        raise ValueError(f"task {task}: pmi must be true or false (got {pmi!r})")
    return {"pmi": pmi}


def load_task(task: str, spec: dict | None) -> list[MCExample]:
    """Examples of task ``task`` from its spec (see the module docstring)."""
    spec = {k: v for k, v in (spec or {}).items() if k not in (*SCORING_KEYS, *RUN_KEYS)}
    kind = spec.pop("kind", "hf")
    if kind == "stdlib_next_line":
        from nextok.evals.stdlib_task import stdlib_next_line

        return stdlib_next_line(**spec)
    if kind != "hf":
        raise ValueError(f"task {task}: unknown kind {kind!r} (hf | stdlib_next_line)")
    return hf_examples(task, spec)
