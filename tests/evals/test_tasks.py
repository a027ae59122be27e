"""Task specs: the shipped HellaSwag/ARC-Easy/PIQA mappings on local jsonl, and stdlib_next_line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nextok.data.sources import split_train_val, stdlib_dataset
from nextok.evals import load_task

CONF = Path(__file__).resolve().parents[2] / "conf" / "tasks"

ROWS = {
    "hellaswag": {
        "activity_label": "Baking cookies",
        "ctx_a": "A woman puts dough on a tray.",
        "ctx_b": "she",
        "ctx": "unused",
        "endings": ["bakes it [title] well.", "eats the tray.", "sings.", "runs away."],
        "label": "0",
    },
    "arc_easy": {
        "question": "Which is a liquid?",
        "answerKey": "C",
        "choices": {"text": ["rock", "ice", "water"], "label": ["A", "B", "C"]},
    },
    "piqa": {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the jar", "label": 0},
}


def _spec(name: str, tmp_path: Path) -> dict:
    spec = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    f = tmp_path / f"{name}.jsonl"
    f.write_text(json.dumps(ROWS[name]) + "\n")
    spec["data_files"] = str(f)
    return spec


def test_shipped_hf_task_mappings_on_local_jsonl(tmp_path):
    (h,) = load_task("hellaswag", _spec("hellaswag", tmp_path))
    assert h.context == "Baking cookies: A woman puts dough on a tray. She"  # lm-eval formatting
    assert h.choices[0] == " bakes it. well." and h.gold == 0 and len(h.choices) == 4
    (a,) = load_task("arc_easy", _spec("arc_easy", tmp_path))
    assert a.context == "Question: Which is a liquid?\nAnswer:"
    assert a.choices == (" rock", " ice", " water") and a.gold == 2
    (p,) = load_task("piqa", _spec("piqa", tmp_path))
    assert p.context == "Question: Open a jar\nAnswer:"
    assert p.choices == (" twist the lid", " eat the jar") and p.gold == 0
    assert yaml.safe_load((CONF / "arc_easy.yaml").read_text())["path"] == "allenai/ai2_arc"


def test_task_errors_name_the_task_and_field(tmp_path):
    spec = _spec("arc_easy", tmp_path)
    with pytest.raises(ValueError, match=r"task arc_easy: row has no field 'choices.txt'"):
        load_task("arc_easy", {**spec, "choices": "choices.txt"})
    with pytest.raises(ValueError, match=r"task arc_easy: row 0: gold 'Z' not in"):
        f = tmp_path / "bad.jsonl"
        f.write_text(json.dumps({**ROWS["arc_easy"], "answerKey": "Z"}) + "\n")
        load_task("arc_easy", {**spec, "data_files": str(f)})
    with pytest.raises(FileNotFoundError, match="task x: data_files not found"):
        load_task("x", {**spec, "data_files": str(tmp_path / "missing.jsonl")})
    with pytest.raises(ValueError, match=r"task x: unknown key\(s\) \['choises'\]"):
        load_task("x", {**spec, "choises": "a"})


def test_stdlib_next_line_is_deterministic_and_held_out():
    a = load_task("stdlib_next_line", {"kind": "stdlib_next_line", "num_examples": 50})
    b = load_task("stdlib_next_line", {"kind": "stdlib_next_line", "num_examples": 50})
    assert a == b and len(a) == 50
    _, val = split_train_val(stdlib_dataset(), 0.01, 1337)
    _, train = None, split_train_val(stdlib_dataset(), 0.01, 1337)[0]
    held_out = "\n".join(val["text"])
    train_paths, val_paths = set(train["path"]), set(val["path"])
    assert not train_paths & val_paths
    for ex in a:
        assert len(ex.choices) == 4 and 0 <= ex.gold < 4
        assert len(set(ex.choices)) == 4
        assert ex.context + ex.choices[ex.gold] in held_out + "\n"  # the true continuation
    assert {ex.gold for ex in a} == {0, 1, 2, 3}  # the gold position is drawn, not fixed
