"""Free-text command-line values (``prompt=...``, ``stop=...``) taken exactly as the shell passed them.

Hydra parses every ``key=value`` with its override grammar, so a prompt such as ``def main(``,
``f(x, y)``, ``a=b`` or ``{"k": [1]}`` fails with a grammar error, and a plain string needs
Hydra quotes inside shell quotes. ``nextok-generate`` therefore takes its free-text keys out of
``argv`` before Hydra sees it: everything after the first ``=`` is the value, byte for byte (the
shell has already removed its own quotes). Only ``\\n``, ``\\t`` and ``\\\\`` are unescaped, so a
newline can be typed on one line. The other keys keep Hydra's grammar.
"""

from __future__ import annotations

import sys

LITERAL_KEYS = ("prompt", "stop")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n`` -> newline, ``\\t`` -> tab, ``\\\\`` -> backslash; any other backslash is kept."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_literal_args(
    argv: list[str], keys: tuple[str, ...] = LITERAL_KEYS
) -> tuple[list[str], dict[str, list[str]]]:
    """(arguments for Hydra, {key: [raw values in order]}) for ``key=value`` arguments of ``keys``.

    A key may be repeated (several prompts, several stop strings). ``+key=`` and ``++key=`` are
    accepted as the same thing, since Hydra users type them out of habit.
    """
    rest: list[str] = []
    found: dict[str, list[str]] = {k: [] for k in keys}
    for arg in argv:
        key, sep, value = arg.partition("=")
        name = key.lstrip("+")
        if sep and name in found:
            found[name].append(value)
        else:
            rest.append(arg)
    return rest, found


def read_prompt_file(path: str) -> list[str]:
    """One prompt per non-blank line of ``path`` (``-``: standard input), unescaped."""
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return [unescape(line) for line in text.splitlines() if line.strip()]
