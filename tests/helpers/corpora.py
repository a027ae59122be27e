"""Small synthetic corpora for the data tests (fast to tokenize, still many blocks)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "the quick brown fox jumps over lazy dog def return class import self data token block".split()
)


def make_docs(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        k = rng.randint(5, 120)
        docs.append(f"doc {i}: " + " ".join(rng.choice(WORDS) for _ in range(k)))
    return docs


def write_jsonl(path: Path, docs: list[str], column: str = "text") -> Path:
    path.write_text("".join(json.dumps({column: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def write_text(path: Path, docs: list[str]) -> Path:
    path.write_text("\n".join(docs) + "\n")
    return path
