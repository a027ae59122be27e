"""``stdlib_next_line``: an offline multiple-choice task from the held-out stdlib files.

Each example shows up to ``context_lines`` consecutive lines of a held-out file and asks for the
true next line among ``num_choices`` candidates. The others (``match_length``, the default) are
other held-out lines with as many non-blank characters as the true line, drawn from every
held-out file (its own included; the nearest lengths when too few have it): the true line and
its distractors then come from one distribution, so the raw summed log-likelihood (``acc``)
measures prediction and a model that knows nothing scores chance (an untrained model: 0.254 on
1,000 examples). ``match_length: false`` builds the older task, whose distractors are lines of
any length from *other* files: there the likeliest choice is mostly the shortest, and an
untrained model scored about as well as a trained one (0.270 vs 0.293).

The held-out files are exactly the training data's validation documents (``split_train_val`` of the stdlib source with the run's ``val_fraction``, ``seed`` and
``streaming``: a streamed source holds out by content hash, a map-style one by a seeded draw), so
the model never saw them; :func:`check_held_out` refuses a task whose keys differ from the data
config's (it would score files the model trained on). Some held-out text is duplicated in training files all the same (e.g. the codec tables
of ``encodings/mac_*.py``), so a position whose context + true line occurs verbatim in the
training documents is skipped (decontamination: the task measures prediction, not recall).
Everything is drawn from ``task_seed``: the same examples on every run and rank. Chance is
``1 / num_choices``.

Text convention: a line carries the newline *before* it, so the context ends with the last
character of its last line and every choice is ``"\\n" + line`` (no newline after it). Scored
separately, context and choice then tokenize exactly as the file did in training: a byte-level
BPE merges a newline with the next line's indentation (``ĊĠĠĠ``), which a context ending in
``"\\n"`` would split into ``Ċ`` + ``ĠĠĠ``, tokens the model rarely saw there. For the same reason
a candidate line may not end in whitespace (its end would not be a token boundary), and lines
are split on ``"\\n"`` only, so context + gold choice is a verbatim slice of the file.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from nextok.evals.tasks import MCExample


def _candidate_lines(text: str, min_chars: int, max_chars: int) -> tuple[list[str], list[int]]:
    lines = text.split("\n")
    idx = [
        i
        for i, ln in enumerate(lines)
        if i > 0 and len(ln.strip()) >= min_chars and len(ln) <= max_chars and ln == ln.rstrip()
    ]
    return lines, idx


def stdlib_next_line(
    seed: int = 1337,
    val_fraction: float = 0.01,
    streaming: bool = False,
    num_examples: int = 300,
    num_choices: int = 4,
    context_lines: int = 6,
    min_chars: int = 8,
    max_chars: int = 100,
    task_seed: int = 0,
    match_length: bool = True,
) -> list[MCExample]:
    """Build the task (``seed``/``val_fraction``/``streaming``: the data config's held-out split)."""
    from nextok.data.sources import iter_texts, load_source, split_train_val

    if num_choices < 2 or num_examples < 1 or context_lines < 1:
        raise ValueError(
            "stdlib_next_line: need num_choices >= 2, num_examples >= 1, context_lines >= 1"
        )
    if not isinstance(match_length, bool):
        raise ValueError(
            f"stdlib_next_line: match_length must be true or false, got {match_length!r}"
        )
    train, val = split_train_val(
        load_source("stdlib", "train", streaming=streaming), val_fraction, seed
    )
    seen_in_training = "\x00".join(t for b in iter_texts(train) for t in b)
    files = [_candidate_lines(t, min_chars, max_chars) for b in iter_texts(val) for t in b]
    files = [(lines, idx) for lines, idx in files if idx]
    if len(files) < 2:
        raise ValueError(
            f"stdlib_next_line: needs >= 2 held-out files with code lines (got {len(files)}); "
            "raise val_fraction"
        )
    rng = np.random.default_rng([task_seed, seed])
    positions = [(f, i) for f, (_, idx) in enumerate(files) for i in idx]
    by_length = sorted(positions, key=lambda p: len(files[p[0]][0][p[1]].strip()))
    lengths = np.array([len(files[f][0][i].strip()) for f, i in by_length])
    out = []
    for p in rng.permutation(len(positions)):
        if len(out) == num_examples:
            break
        f, i = positions[p]
        lines = files[f][0]
        gold_line = lines[i]
        start = max(0, i - context_lines)
        context = ("\n" if start > 0 else "") + "\n".join(lines[start:i])
        if context + "\n" + gold_line in seen_in_training:
            continue
        if match_length:
            others = _same_length(files, by_length, lengths, gold_line, num_choices - 1, rng)
        else:
            others = _any_length(files, f, gold_line, num_choices - 1, rng)
        gold = int(rng.integers(num_choices))
        choices = others[:gold] + [gold_line] + others[gold:]
        out.append(MCExample(context, tuple("\n" + c for c in choices), gold, "\n"))
    if len(out) < num_examples:
        raise ValueError(
            f"stdlib_next_line: only {len(out)} held-out lines qualify (num_examples="
            f"{num_examples}); lower num_examples or raise val_fraction"
        )
    return out


def _any_length(files: list, f: int, gold_line: str, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct lines of any length from files other than ``f`` (the older task)."""
    others: list[str] = []
    seen = {gold_line.strip()}
    while len(others) < n:
        g = int(rng.integers(len(files) - 1))
        g = g + (g >= f)  # another file
        lines_g, idx_g = files[g]
        cand = lines_g[idx_g[int(rng.integers(len(idx_g)))]]
        if cand.strip() not in seen:
            seen.add(cand.strip())
            others.append(cand)
    return others


def _same_length(
    files: list,
    by_length: list[tuple[int, int]],
    lengths: np.ndarray,
    gold_line: str,
    n: int,
    rng: np.random.Generator,
) -> list[str]:
    """``n`` distinct held-out lines (any file) with the stripped length of ``gold_line``
    (``by_length``: every candidate, sorted by it; ``lengths``: theirs); when too few have it,
    lengths within 1, 2, ... characters of it."""
    target = len(gold_line.strip())
    for width in range(int(lengths[-1]) + 1):
        lo = int(np.searchsorted(lengths, target - width, side="left"))
        hi = int(np.searchsorted(lengths, target + width, side="right"))
        others: list[str] = []
        seen = {gold_line.strip()}
        for _ in range(50 * n):  # draws; too few distinct lines here: widen
            g, i = by_length[lo + int(rng.integers(hi - lo))]
            cand = files[g][0][i]
            if cand.strip() not in seen:
                seen.add(cand.strip())
                others.append(cand)
                if len(others) == n:
                    return others
    raise ValueError(
        f"stdlib_next_line: fewer than {n} distinct candidate lines besides the true one in the "
        "held-out files; lower num_choices or raise val_fraction"
    )


HELD_OUT_KEYS = ("val_fraction", "seed", "streaming")  # what decides the stdlib's held-out files


def training_held_out(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Where a data config trains on the stdlib: ``{config path: {val_fraction, seed, streaming}}``.

    ``data=mixture``: every source with ``source: stdlib``; a source's own ``val_fraction`` and
    ``streaming`` override the shared keys (``seed`` is shared). Keys a config lacks take
    :func:`stdlib_next_line`'s defaults, which are the data modules' defaults."""
    defaults = inspect.signature(stdlib_next_line).parameters
    shared = {k: data.get(k, defaults[k].default) for k in HELD_OUT_KEYS}
    sources = data.get("sources")
    if sources:
        return {
            f"data.sources.{name}": {**shared, **{k: src[k] for k in HELD_OUT_KEYS if k in src}}
            for name, src in sources.items()
            if src.get("source", data.get("source")) == "stdlib"
        }
    return {"data": shared} if data.get("source") == "stdlib" else {}


def check_held_out(task: str, spec: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Refuse (one line) a ``stdlib_next_line`` spec whose held-out files are not the training
    data's: it would score lines the model trained on, an optimistic accuracy reported silently."""
    defaults = inspect.signature(stdlib_next_line).parameters
    mine = {k: spec.get(k, defaults[k].default) for k in HELD_OUT_KEYS}
    for where, theirs in training_held_out(data).items():
        diff = [k for k in HELD_OUT_KEYS if mine[k] != theirs[k]]
        if diff:
            raise ValueError(
                f"tasks.{task}: {', '.join(f'{k}={mine[k]}' for k in diff)} but {where} trains "
                f"with {', '.join(f'{k}={theirs[k]}' for k in diff)}: its held-out files would "
                f"include training files; set {', '.join(f'tasks.{task}.{k}' for k in diff)} "
                "to the data config's values"
            )


def skipped_for_data(spec: Any, data: Mapping[str, Any] | None) -> bool:
    """True for a ``stdlib_next_line`` spec with ``corpus_only: true`` when the training data
    does not include the stdlib corpus: a run on one's own corpus does not pay for the default
    corpus's task (``corpus_only: false`` runs it with any data)."""
    return (
        isinstance(spec, Mapping)
        and spec.get("kind") == "stdlib_next_line"
        and bool(spec.get("corpus_only", False))
        and data is not None
        and not training_held_out(data)
    )


def check_task_specs(specs: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """:func:`check_held_out` for every ``stdlib_next_line`` spec of ``specs`` (resolved dicts)."""
    for name, spec in specs.items():
        if isinstance(spec, Mapping) and spec.get("kind") == "stdlib_next_line":
            check_held_out(name, spec, data)
