"""The ``ponte`` command is one package whose modules import each other without a loop: the
command modules know nothing of ``etl.cli``'s ``__init__`` (which wires them), so a command is
added by one module and one line there, never by patching another module's commands."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ETL = Path(__file__).resolve().parents[1] / "etl"


def module_name(path: Path) -> str:
    parts = path.relative_to(ETL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cli_modules() -> dict[str, Path]:
    """Every module of the command line: ``etl/cli*.py`` and ``etl/cli/**``."""
    paths = [*ETL.glob("cli*.py"), *ETL.glob("cli/**/*.py")]
    return {module_name(p): p for p in paths}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The CLI modules ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
], ids=["tree", "two modules", "behind another"])
def test_cycle_finds_import_loops(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert cycle(graph) == expected


def test_the_cli_is_one_package() -> None:
    modules = cli_modules()
    assert "etl.cli" in modules and (ETL / "cli" / "__init__.py").is_file()
    assert [m for m in modules if not m.startswith("etl.cli.") and m != "etl.cli"] == []


def test_the_cli_modules_import_each_other_without_a_loop() -> None:
    modules = cli_modules()
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    assert cycle(graph) is None, f"import loop: {' -> '.join(cycle(graph) or [])}"
    # the command modules never reach back into the package's __init__ (the wiring)
    assert [n for n, deps in graph.items() if "etl.cli" in deps] == []
