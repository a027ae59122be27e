"""nextok-eval's per-choice log-likelihoods, ``acc`` and ``acc_norm`` equal lm-evaluation-harness's
(``hf`` backend, a local task file, no hub) on the same exported model and examples."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tokenizers import AddedToken

from nextok.checkpoint import load_checkpoint
from nextok.data import stdlib_files, train_bpe
from nextok.data.tokenization.tokenizer import EOT, SpecialTokens
from nextok.evals import context_prefix, evaluate_task, load_task, loglikelihoods
from nextok.evals.scoring import task_requests
from nextok.hf import export_hf
from nextok.model import ModelConfig, Transformer

lm_eval = pytest.importorskip("lm_eval")

N = 60


def _rows() -> list[dict]:
    """Multiple choice from real code lines: which second half ends this first half."""
    lines = []
    for f in stdlib_files()[:30]:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            if len(words) >= 4 and line.isascii():
                lines.append(words)
    rng = random.Random(0)
    rng.shuffle(lines)
    rows = []
    for i in range(N):
        words = lines[i]
        half = len(words) // 2
        others = [
            " ".join(lines[N + 3 * i + j][len(lines[N + 3 * i + j]) // 2 :]) for j in range(3)
        ]
        gold = rng.randrange(4)
        choices = others[:gold] + [" ".join(words[half:])] + others[gold:]
        rows.append({"context": " ".join(words[:half]), "choices": choices, "gold": gold})
    return rows


def _folder(tmp_path, bos: bool):
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in stdlib_files()[:10]]
    tok = train_bpe(texts, 500)
    special = SpecialTokens(eos=EOT)
    if bos:
        tok.add_special_tokens([AddedToken("<s>", special=True)])
        special = SpecialTokens(eos=EOT, bos="<s>", add_bos=True)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=512, block_size=128, n_layer=2, n_head=2, d_model=32, init_std=0.2)
    return export_hf(Transformer(cfg), tmp_path / "hf", tok, special)


def _lm_eval(folder, data, tmp_path) -> list[dict]:
    """lm-eval's samples (per-choice log-likelihoods, acc, acc_norm) in document order."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "nextok_mc.yaml").write_text(
        f"""task: nextok_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
target_delimiter: " "
metric_list:
  - metric: acc
  - metric: acc_norm
"""
    )
    out = simple_evaluate(
        model="hf",
        model_args={"pretrained": str(folder), "dtype": "float32"},
        tasks=["nextok_mc"],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
        batch_size=16,
        device="cpu",
        log_samples=True,
    )
    samples = sorted(out["samples"]["nextok_mc"], key=lambda s: s["doc_id"])
    return samples, out["results"]["nextok_mc"]


@pytest.mark.slow
@pytest.mark.parametrize("bos", [False, True], ids=["nextok-bpe", "with-bos"])
def test_per_choice_scores_equal_lm_eval(tmp_path, bos):
    folder = _folder(tmp_path, bos)
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    samples, results = _lm_eval(folder, data, tmp_path)
    assert len(samples) == N

    loaded = load_checkpoint(folder)  # what nextok-eval loads
    spec = {"data_files": str(data), "context": "{context}", "choices": "choices", "gold": "gold"}
    examples = load_task("mc", spec)
    prefix = context_prefix(loaded.tokenizer, loaded.special)
    assert prefix == ([loaded.tokenizer.token_to_id("<s>")] if bos else [])
    ll = loglikelihoods(
        loaded.model, task_requests(loaded.tokenizer, examples, prefix), block_size=128
    )
    theirs = [float(r[0]) for s in samples for r in (x[0] for x in s["resps"])]
    diff = max(abs(a - b) for a, b in zip(ll, theirs, strict=True))
    print(f"lm-eval parity ({'bos' if bos else 'no bos'}): max per-choice |diff| {diff:.2e}")
    assert diff < 1e-4
    res = evaluate_task(loaded.model, loaded.tokenizer, examples, block_size=128, prefix_ids=prefix)
    assert res.acc == pytest.approx(results["acc,none"])
    assert res.acc_norm == pytest.approx(results["acc_norm,none"])
    # and per example
    pos = 0
    for s, ex in zip(samples, examples, strict=True):
        k = len(ex.choices)
        mine = ll[pos : pos + k]
        norm = [v / len(c.removeprefix(" ")) for v, c in zip(mine, ex.choices)]
        assert float(max(range(k), key=mine.__getitem__) == ex.gold) == s["acc"]
        assert float(max(range(k), key=norm.__getitem__) == ex.gold) == s["acc_norm"]
        pos += k
