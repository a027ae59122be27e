"""The docs name what exists: every ``nextok.*`` name and every repository path that README.md and
``docs/**/*.md`` mention resolves, so a moved module or renamed test fails here, not in a reader's
hands. Names are imported (the longest importable module prefix, then ``getattr`` the rest);
paths are looked up in the checkout, and ``tests/x.py::name`` must define ``name`` in that file."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TOP = ("src", "tests", "conf", "benchmarks", "slurm", "docs")


def owned_elsewhere() -> set[str]:
    """``docs/`` pages another part of the project writes (``docs_hooks.OWNED_ELSEWHERE``): the
    site shows a placeholder until they land, so naming them is not an error."""
    for node in ast.parse((ROOT / "docs_hooks.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "OWNED_ELSEWHERE":
            return {f"docs/{name}" for name in ast.literal_eval(node.value)}
    raise AssertionError("docs_hooks.py defines no OWNED_ELSEWHERE")


SPAN = re.compile(r"`([^`\n]+)`")
NAME = re.compile(r"(?<![\w.\-/])nextok(?:\.[A-Za-z_]\w*)+")
TARGET = re.compile(r"_target_:\s*(nextok(?:\.\w+)+)")
TOPS = "|".join(TOP)
PATH = re.compile(rf"(?<![\w.\-/])((?:{TOPS})/[\w./\-*]*)((?:::[\w\[\]\-]+)*)(?::\d+)?")


def resolves(name: str) -> bool:
    """Whether ``name`` is an importable module or an attribute chain below one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as err:
            if err.name and not ".".join(parts[:cut]).startswith(err.name):
                raise  # a missing third-party dependency, not a missing nextok module
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def path_exists(path: str, test_names: str = "") -> bool:
    """Whether ``path`` (a glob allowed) exists in the checkout and, for ``file.py::a::b`` or
    ``folder::a``, the file (a ``.py`` file of the folder) defines each name."""
    path = path.rstrip(".")
    targets = sorted(ROOT.glob(path)) if "*" in path else [ROOT / path]
    targets = [t for t in targets if t.exists()]
    if not targets:
        return False
    files = [f for t in targets for f in ([t] if t.is_file() else t.rglob("*.py"))]
    source = "\n".join(f.read_text() for f in files) if test_names else ""
    for name in filter(None, test_names.split("::")):
        name = name.split("[")[0]
        if not re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", source, re.M):
            return False
    return True


def mentions(page: Path) -> list[tuple[int, str, str]]:
    """(line, kind, text) of every name in backticks (inline or a fenced block), ``_target_``
    and repository path."""
    found, fenced = [], False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        spans = [line] if fenced else SPAN.findall(line)
        found += [(number, "name", m) for span in spans for m in NAME.findall(span)]
        found += [(number, "name", m) for m in TARGET.findall(line) if not fenced]
        for path, names in PATH.findall(line):
            found.append((number, "path", path + names))
    return found


def test_every_named_module_and_path_exists():
    failures, pending = [], owned_elsewhere()
    for page in PAGES:
        where = page.relative_to(ROOT)
        for number, kind, text in mentions(page):
            if kind == "name":
                ok = resolves(text)
            else:
                path, _, names = text.partition("::")
                ok = path in pending or path_exists(path, names)
            if not ok:
                failures.append(f"{where}:{number} -> {text}")
    assert not failures, f"{len(failures)} names in the docs do not exist:\n" + "\n".join(
        sorted(set(failures), key=failures.index)
    )


def test_the_checks_catch_a_moved_module_a_missing_path_and_a_missing_test(tmp_path):
    assert resolves("nextok.optim.AdamWConfig") and resolves("nextok.model.Transformer.forward")
    assert not resolves("nextok.lit.optim.AdamWConfig")
    assert not resolves("nextok.checkpoint_dcp.SafeFileSystemReader")
    assert path_exists("tests/docs/test_names.py", "test_every_named_module_and_path_exists")
    assert not path_exists("tests/docs/test_names.py", "test_no_such_test")
    assert not path_exists("src/nextok/checkpoint.py")
    assert path_exists("tests/docs/test_n*.py") and not path_exists("tests/docs/test_nothing*.py")
    assert path_exists("tests/docs", "test_every_named_module_and_path_exists")
    assert not path_exists("tests/docs", "test_no_such_test")
    assert "docs/serving.md" in owned_elsewhere()
    line = "see `src/nextok/lit/app.py:12` and tests/a/b.py::t[x] then `nextok.lit.muon.X`"
    assert PATH.findall(line) == [("src/nextok/lit/app.py", ""), ("tests/a/b.py", "::t[x]")]
    assert NAME.findall(SPAN.findall(line)[-1]) == ["nextok.lit.muon.X"]
    assert TARGET.findall("  _target_: nextok.lit.callbacks.SamplingCallback") == [
        "nextok.lit.callbacks.SamplingCallback"
    ]
    page = tmp_path / "page.md"
    page.write_text(
        "Run `nextok.lit.app` (src/nextok/lit/app.py).\n```yaml\n"
        "_target_: nextok.lit.sample_callback.SamplingCallback\n```\n"
    )
    assert mentions(page) == [
        (1, "name", "nextok.lit.app"),
        (1, "path", "src/nextok/lit/app.py"),
        (3, "name", "nextok.lit.sample_callback.SamplingCallback"),
    ]
