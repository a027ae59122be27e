"""Task specs: the shipped HellaSwag/ARC-Easy/PIQA mappings on local jsonl, and stdlib_next_line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers.evals import tiny_tokenizer
from nextok.data.sources import split_train_val, stdlib_dataset
from nextok.data.sources.split import _is_val_doc
from nextok.evals import load_task, scoring_options
from nextok.evals.scoring import encode_example

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


def test_scoring_options_are_not_task_fields(tmp_path):
    spec = _spec("piqa", tmp_path)
    assert scoring_options("piqa", spec) == {"pmi": False}  # off unless a task asks
    assert load_task("piqa", {**spec, "pmi": True}) == load_task("piqa", spec)
    assert scoring_options("piqa", {**spec, "pmi": True}) == {"pmi": True}
    with pytest.raises(ValueError, match="task piqa: pmi must be true or false"):
        scoring_options("piqa", {**spec, "pmi": "yes"})
    shipped = yaml.safe_load((CONF / "stdlib_next_line.yaml").read_text())
    assert shipped["pmi"] is True and shipped["num_examples"] == 300
    for hub in ROWS:  # off for the hub tasks (the key is there to be overridden)
        assert yaml.safe_load((CONF / f"{hub}.yaml").read_text())["pmi"] is False


def test_stdlib_next_line_is_deterministic_held_out_and_decontaminated():
    spec = {"kind": "stdlib_next_line", "num_examples": 300}  # the shipped size
    a = load_task("stdlib_next_line", spec)
    assert len(a) == 300 and a[:100] == load_task("stdlib_next_line", {**spec, "num_examples": 100})
    train, val = split_train_val(stdlib_dataset(), 0.01, 1337)
    assert not set(train["path"]) & set(val["path"])
    seen_in_training = "\x00".join(train["text"])
    for ex in a:
        assert len(ex.choices) == 4 and 0 <= ex.gold < 4
        assert len(set(ex.choices)) == 4
        passage = ex.context + ex.choices[ex.gold]
        # the true continuation, a verbatim slice of a held-out file ending at a line end
        assert any(passage + "\n" in t or t.endswith(passage) for t in val["text"])
        assert passage not in seen_in_training  # decontaminated
    assert {ex.gold for ex in a} == {0, 1, 2, 3}  # the gold position is drawn, not fixed


def test_stdlib_next_line_distractors_match_the_true_lines_length():
    """Distractors are held-out lines as long as the true one (non-blank characters), so raw
    log-likelihood cannot win by picking the shortest; ``match_length: false`` is the older task
    (any length, other files), where the true line was the shortest choice more often."""
    spec = {"kind": "stdlib_next_line", "num_examples": 300}
    matched = load_task("stdlib_next_line", spec)
    old = load_task("stdlib_next_line", {**spec, "match_length": False})
    assert [ex.context for ex in matched] == [ex.context for ex in old]  # the same positions

    def spread(ex):
        n = [len(c.strip()) for c in ex.choices]
        return max(n) - min(n)

    assert sum(spread(ex) == 0 for ex in matched) >= 0.95 * len(matched)
    assert max(spread(ex) for ex in matched) <= 6  # the rare widened band stays near
    assert sum(spread(ex) == 0 for ex in old) < 0.05 * len(old)
    _, val = split_train_val(stdlib_dataset(), 0.01, 1337)
    lines = {ln for t in val["text"] for ln in t.split("\n")}
    assert all(c[1:] in lines for ex in matched for c in ex.choices)  # every choice is held out


def test_stdlib_next_line_refuses_a_non_boolean_match_length():
    with pytest.raises(ValueError, match="match_length must be true or false, got 'maybe'"):
        load_task("stdlib_next_line", {"kind": "stdlib_next_line", "match_length": "maybe"})


def test_stdlib_next_line_tokenizes_like_the_file():
    """Each choice is "\\n" + line; scored separately, context and choice give the tokens the
    file itself gives (a newline merges with the next line's indentation)."""
    tok = tiny_tokenizer()
    _, val = split_train_val(stdlib_dataset(), 0.01, 1337)
    examples = load_task("stdlib_next_line", {"kind": "stdlib_next_line", "num_examples": 100})
    split_differently = 0
    for ex in examples:
        assert all(c.startswith("\n") and c == c.rstrip() for c in ex.choices)
        ctx, conts = encode_example(tok, ex)
        for choice, cont in zip(ex.choices, conts):
            assert ctx + cont == tok.encode(ex.context + choice, add_special_tokens=False).ids
        passage = ex.context + ex.choices[ex.gold]
        text = next(t for t in val["text"] if passage in t)
        rest = text[text.index(passage) :]  # the passage and what follows it in the file
        ids = ctx + conts[ex.gold]
        assert tok.encode(rest, add_special_tokens=False).ids[: len(ids)] == ids
        # the old convention (newline ending the context) splits the newline off the indent
        old_ctx = tok.encode(ex.context + "\n", add_special_tokens=False).ids
        old = old_ctx + tok.encode(ex.choices[ex.gold][1:], add_special_tokens=False).ids
        split_differently += old != ids
    assert split_differently > len(examples) // 2


def test_stdlib_next_line_skips_passages_seen_in_training(monkeypatch):
    """Files sharing a block of lines (like stdlib's codec tables): positions inside the shared
    block are found verbatim in training files and never become examples."""
    import datasets

    shared = [f"    SHARED_TABLE_ENTRY_{j} = {j}" for j in range(20)]
    docs = [
        "\n".join([f"def file_{d}():"] + shared + [f"    own_{d}_{j} = {j}" for j in range(20)])
        for d in range(10)
    ]
    ds = datasets.Dataset.from_dict({"text": docs, "path": [f"f{d}.py" for d in range(10)]})
    monkeypatch.setattr("nextok.data.sources.stdlib.stdlib_dataset", lambda: ds)
    train, _ = split_train_val(ds, 0.2, 1337)
    seen_in_training = "\x00".join(train["text"])
    examples = load_task("x", {"kind": "stdlib_next_line", "val_fraction": 0.2, "num_examples": 15})
    for ex in examples:
        assert ex.context + ex.choices[ex.gold] not in seen_in_training
        assert "own_" in ex.choices[ex.gold] or "def file_" in ex.context
    # 2 held-out files x 40 candidate lines, minus the 14 shared lines per file whose 6 lines of
    # context are all shared (so the passage occurs in every training file)
    with pytest.raises(ValueError, match="stdlib_next_line: only 52 held-out lines qualify"):
        load_task("x", {"kind": "stdlib_next_line", "val_fraction": 0.2, "num_examples": 60})


def test_stdlib_next_line_streaming_holds_out_what_a_streamed_run_holds_out():
    """A streamed stdlib holds out files by content hash, not by the map-style seeded draw: the
    task must use the run's rule, or it scores files a streamed run trained on."""
    examples = load_task("x", {"kind": "stdlib_next_line", "streaming": True, "num_examples": 100})
    docs = stdlib_dataset()["text"]
    _, map_val = split_train_val(stdlib_dataset(), 0.01, 1337)
    map_held_out = set(map_val["text"])
    outside_map_split = 0
    for ex in examples:
        passage = ex.context + ex.choices[ex.gold]
        home = [t for t in docs if passage + "\n" in t or t.endswith(passage)]
        assert home and all(_is_val_doc(t, 0.01, 1337) for t in home)  # the hash's held-out
        outside_map_split += not any(t in map_held_out for t in home)
    assert outside_map_split > 50  # the two rules pick different files: the choice matters
