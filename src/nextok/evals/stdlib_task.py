"""``stdlib_next_line``: an offline multiple-choice task from the held-out stdlib files.

Each example shows up to ``context_lines`` consecutive lines of a held-out file and asks for the
true next line among ``num_choices`` candidates; the others are lines drawn from *other*
held-out files. The held-out files are exactly the default data's validation documents
(``split_train_val(stdlib, val_fraction, seed)``), so a model trained on the default run never
saw them. Everything is drawn from ``task_seed``: the same examples on every run and rank.
Chance is ``1 / num_choices``.
"""

from __future__ import annotations

import numpy as np

from nextok.evals.tasks import MCExample


def _candidate_lines(text: str, min_chars: int, max_chars: int) -> tuple[list[str], list[int]]:
    lines = text.splitlines()
    idx = [
        i
        for i, ln in enumerate(lines)
        if i > 0 and len(ln.strip()) >= min_chars and len(ln) <= max_chars
    ]
    return lines, idx


def stdlib_next_line(
    seed: int = 1337,
    val_fraction: float = 0.01,
    num_examples: int = 300,
    num_choices: int = 4,
    context_lines: int = 6,
    min_chars: int = 8,
    max_chars: int = 100,
    task_seed: int = 0,
) -> list[MCExample]:
    """Build the task (``seed``/``val_fraction``: the data config's held-out split)."""
    from nextok.data.sources import split_train_val, stdlib_dataset

    if num_choices < 2 or num_examples < 1 or context_lines < 1:
        raise ValueError(
            "stdlib_next_line: need num_choices >= 2, num_examples >= 1, context_lines >= 1"
        )
    _, val = split_train_val(stdlib_dataset(), val_fraction, seed)
    files = [_candidate_lines(t, min_chars, max_chars) for t in val["text"]]
    files = [(lines, idx) for lines, idx in files if idx]
    if len(files) < 2:
        raise ValueError(
            f"stdlib_next_line: needs >= 2 held-out files with code lines (got {len(files)}); "
            "raise val_fraction"
        )
    rng = np.random.default_rng([task_seed, seed])
    positions = [(f, i) for f, (_, idx) in enumerate(files) for i in idx]
    order = rng.permutation(len(positions))[:num_examples]
    out = []
    for p in order:
        f, i = positions[p]
        lines = files[f][0]
        gold_line = lines[i]
        context = "\n".join(lines[max(0, i - context_lines) : i]) + "\n"
        others: list[str] = []
        seen = {gold_line.strip()}
        while len(others) < num_choices - 1:
            g = int(rng.integers(len(files) - 1))
            g = g + (g >= f)  # another file
            lines_g, idx_g = files[g]
            cand = lines_g[idx_g[int(rng.integers(len(idx_g)))]]
            if cand.strip() not in seen:
                seen.add(cand.strip())
                others.append(cand)
        gold = int(rng.integers(num_choices))
        choices = others[:gold] + [gold_line] + others[gold:]
        out.append(MCExample(context, tuple(c + "\n" for c in choices), gold))
    return out
