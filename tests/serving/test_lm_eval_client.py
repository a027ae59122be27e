"""lm-evaluation-harness's ``local-completions`` client scoring multiple-choice examples through
the server picks the same choice per example as nextok's own scoring (``nextok.evals``) on the
same model (slow: lm-eval is a heavy import)."""

from __future__ import annotations

import pytest

from helpers.server import ThreadServer
from nextok.evals.scoring import encode_example, loglikelihoods
from nextok.evals.tasks import MCExample

pytestmark = pytest.mark.slow

EXAMPLES = [
    MCExample("def add(a, b):\n    return", (" a + b", " a - b", " None"), 0),
    MCExample("import", (" os", " sys", " re"), 0),
    MCExample("class Point:\n    def", (" __init__(self, x, y):", " run(self):"), 0),
    MCExample("for i in", (" range(10):", " items:", " x"), 0),
    MCExample("print(", ("i)", "x, y)", "'hello')"), 0),
]


def test_local_completions_choices_equal_nextok_eval(tokenizer, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    import tenacity  # noqa: F401  lm-eval[api], in the dev extra: missing = a failure, not a skip
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    from transformers import PreTrainedTokenizerFast

    from helpers.generation import tiny_model

    del lm_eval
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(tmp_path / "tok")

    ours, our_scores = [], []
    for ex in EXAMPLES:
        ctx, conts = encode_example(tokenizer, ex)
        scores = loglikelihoods(model, [(ctx, c) for c in conts], block_size=64)
        ours.append(max(range(len(scores)), key=scores.__getitem__))
        our_scores += scores

    with ThreadServer(model, tokenizer) as server:
        lm = LocalCompletionsAPI(
            model="tiny",
            base_url=server.url + "/v1/completions",
            tokenizer_backend="huggingface",
            tokenizer=str(tmp_path / "tok"),
            max_length=64,
            batch_size=4,
        )
        reqs = [
            Instance("loglikelihood", {}, (ex.context, c), idx=j)
            for ex in EXAMPLES
            for j, c in enumerate(ex.choices)
        ]
        results = lm.loglikelihood(reqs)
    theirs, at = [], 0
    for ex in EXAMPLES:
        scores = [ll for ll, _ in results[at : at + len(ex.choices)]]
        at += len(ex.choices)
        theirs.append(max(range(len(scores)), key=scores.__getitem__))
    assert theirs == ours
    assert [ll for ll, _ in results] == pytest.approx(our_scores, abs=1e-3)
