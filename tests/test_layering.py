"""The import direction between nextok's packages, checked on the source (every import statement,
also those inside functions): the model stays a plain PyTorch module anyone can lift out, and the
data pipeline and the model never reach up into the Lightning glue or the command-line tools."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nextok"

PLAN_FORBIDS = ("lightning", "nextok.lit", "nextok.run.app", "nextok.run.build", "nextok.cli")
# package (dotted, under nextok) -> import prefixes it must never use
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "nextok.model": ("lightning", "hydra", "omegaconf", "nextok.data", "nextok.lit", "nextok.cli"),
    "nextok.generation": (
        "lightning",
        "hydra",
        "omegaconf",
        "nextok.data",
        "nextok.lit",
        "nextok.cli",
    ),
    # the serving engine is plain PyTorch over model/ and generation/ (the HTTP server is cli/)
    "nextok.serving": (
        "lightning",
        "hydra",
        "omegaconf",
        "nextok.data",
        "nextok.lit",
        "nextok.cli",
    ),
    "nextok.data": ("hydra", "nextok.lit", "nextok.cli"),
    "nextok.distributed": (
        "lightning",
        "hydra",
        "omegaconf",
        "nextok.data",
        "nextok.lit",
        "nextok.cli",
    ),
    # downstream evaluation and metrics are plain PyTorch (the callback lives in nextok.lit)
    "nextok.evals": ("lightning", "hydra", "omegaconf", "nextok.lit", "nextok.cli"),
    "nextok.metrics": (
        "lightning",
        "hydra",
        "omegaconf",
        "nextok.data",
        "nextok.lit",
        "nextok.cli",
    ),
    "nextok.dtypes": ("lightning", "hydra", "omegaconf", "nextok.data", "nextok.lit", "nextok.cli"),
    # say() is for every package that prints (data/ included): it reaches up into nothing
    "nextok.console": ("hydra", "omegaconf", "nextok.data", "nextok.lit", "nextok.cli"),
    # the Lightning glue never calls the training application or the command-line tools
    "nextok.lit": ("nextok.run", "nextok.cli"),
    # callbacks are given what they need; they never reach into the application that built them
    "nextok.lit.callbacks": ("hydra", "omegaconf", "nextok.run", "nextok.cli"),
    # the training application sits below the command-line tools
    "nextok.run": ("nextok.cli",),
    # the run is one way (cli -> run.app -> run.plan): the plan and what it is made of never
    # reach back into the application that follows it, nor into Lightning
    **{
        f"nextok.run.{m}": PLAN_FORBIDS
        for m in ("plan", "tokenizer_source", "init_from", "config", "model_presets")
    },
    # the console tee is plain Python (the progress bar and the application share it)
    "nextok.tee": ("lightning", "hydra", "omegaconf", "torch", "nextok"),
    # the one CLI error style: plain Python (+ Hydra's exception type), usable before heavy imports
    "nextok.cli.errors": ("lightning", "torch", "omegaconf", "nextok"),
    # small shared homes every package may import: they import nothing of nextok
    "nextok.io": ("lightning", "hydra", "omegaconf", "torch", "nextok"),
    "nextok.special_tokens": ("lightning", "hydra", "omegaconf", "torch", "nextok"),
    "nextok.plain": ("lightning", "hydra", "torch", "nextok"),
    # optimizers and schedules are plain PyTorch (the LightningModule only calls build_optimizer)
    "nextok.optim": (
        "lightning",
        "hydra",
        "omegaconf",
        "nextok.data",
        "nextok.lit",
        "nextok.run",
        "nextok.cli",
    ),
    # checkpoints are plain PyTorch below the Lightning glue: usable by every command and by lit/
    "nextok.checkpoint": (
        "lightning",
        "hydra",
        "omegaconf",
        "nextok.lit",
        "nextok.run",
        "nextok.cli",
    ),
    # what a file is not, before torch reads it: plain Python
    "nextok.checkpoint.file": ("lightning", "hydra", "omegaconf", "torch", "nextok"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative imports resolved against
    ``package`` (the dotted package the file sits in)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def containing_package(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def files_of(package: str) -> list[Path]:
    rel = Path(*package.split(".")[1:])
    as_module = SRC / rel.with_suffix(".py")
    if as_module.is_file():
        return [as_module]
    return sorted((SRC / rel).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    files = files_of(package)
    assert files, f"no source files found for {package}"
    bad = [
        f"{path.relative_to(SRC.parent)}:{line} imports {name}"
        for path in files
        for line, name in imports_of(path, containing_package(path))
        if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[package])
    ]
    assert not bad, f"{package} must not import {FORBIDDEN[package]}:\n" + "\n".join(bad)


def test_model_imports_nothing_of_nextok_but_itself() -> None:
    """nextok.model is liftable on its own: no import of any other nextok module."""
    bad = [
        f"{path.relative_to(SRC.parent)}:{line} imports {name}"
        for path in files_of("nextok.model")
        for line, name in imports_of(path, containing_package(path))
        if name.startswith("nextok")
        and not (name == "nextok.model" or name.startswith("nextok.model."))
    ]
    assert not bad, "nextok.model must import only nextok.model.*:\n" + "\n".join(bad)


def test_checker_sees_imports_inside_functions_and_relative(tmp_path: Path) -> None:
    """The check would catch a violation hidden in a function body or spelt relatively."""
    f = tmp_path / "mod.py"
    f.write_text("def f():\n    import lightning.pytorch as pl\n    from ..lit import module\n")
    assert [name for _, name in imports_of(f, "nextok.model")] == [
        "lightning.pytorch",
        "nextok.lit",
    ]


def test_special_token_literals_have_one_home() -> None:
    """``<|endoftext|>`` and ``<|pad|>`` appear as code (not prose) only in nextok.special_tokens."""
    from nextok.special_tokens import EOT, PAD

    home = SRC / "special_tokens.py"
    copies = [
        f"{path.relative_to(SRC.parent)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        if path != home
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in (EOT, PAD)
    ]
    assert not copies, "import EOT/PAD from nextok.special_tokens instead:\n" + "\n".join(copies)


def _module_graph() -> dict[str, set[str]]:
    """nextok module -> the nextok modules it imports (a package stands for its ``__init__``)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {
            target
            for _, target in imports_of(path, containing_package(path))
            if target in modules and target != name
        }
    return graph


def import_cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """One import path from ``start`` back to itself, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


@pytest.mark.parametrize(
    "package", ["nextok.optim", "nextok.checkpoint", "nextok.model", "nextok.lit", "nextok.run"]
)
def test_no_import_cycles(package: str) -> None:
    """No module of these packages reaches itself through imports (an import circle makes the
    import order matter and hides which module depends on which)."""
    graph = _module_graph()
    cycles = [
        " -> ".join(c)
        for m in sorted(graph)
        if m == package or m.startswith(package + ".")
        if (c := import_cycle(graph, m))
    ]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycle(graph, "a") == ["a", "b", "c", "a"]
    assert import_cycle(graph, "d") is None
