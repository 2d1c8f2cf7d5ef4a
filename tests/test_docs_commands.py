"""What README.md and bench/README.md tell people to type exists as printed: linked and named
files, ``make`` targets, ``ponte`` commands and their options, the benchmark scripts and their
options, run with the venv's python (a bare ``python`` is not the one ponte is installed in).
And the other way round: every ``ponte`` command and subcommand is shown in README.md and
listed by its parent's ``--help``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from etl.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md"]
IDS = ["README.md", "bench/README.md"]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def code_of(doc: Path) -> list[str]:
    """Inline code spans and the lines of fenced blocks."""
    text = doc.read_text()
    lines = [ln for block in FENCE.findall(text) for ln in block.splitlines()]
    prose = FENCE.sub("", text)
    return lines + re.findall(r"`([^`\n]+)`", prose)


def ponte_commands(doc: Path) -> list[list[str]]:
    """The words after ``ponte`` in every command of the doc, up to a shell operator."""
    found = []
    for code in code_of(doc):
        for m in re.finditer(r"(?:^|bin/)ponte((?:\s+[^\s;&|>#']+)*)", code):
            found.append(m.group(1).split())
    return found


def test_the_docs_print_ponte_commands() -> None:
    assert len(ponte_commands(ROOT / "README.md")) > 20


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_ponte_command_and_option_exists(doc: Path) -> None:
    root = typer.main.get_command(app)  # a click-style command tree (typer's own click)
    for words in ponte_commands(doc):
        command: Any = root
        rest = list(words)
        while getattr(command, "commands", None) and rest and not rest[0].startswith(("-", "[")):
            sub = command.commands.get(rest[0])
            assert sub is not None, f"{doc.name}: `ponte {' '.join(words)}`: no command " \
                                    f"{rest[0]!r} (valid: {', '.join(command.commands)})"
            command, rest = sub, rest[1:]
        known = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts]}
        known |= {"--help"}
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", " ".join(rest)):
            assert flag in known, f"{doc.name}: `ponte {' '.join(words)}`: {flag} is not an " \
                                  f"option of `{command.name}` ({', '.join(sorted(known))})"


def bench_commands(doc: Path) -> list[tuple[str, str, list[str]]]:
    found = []
    for code in code_of(doc):
        for m in re.finditer(r"(\S*python3?) (bench/[\w/]+\.py)((?:\s+[^\s;&|>#`]+)*)", code):
            found.append((m.group(1), m.group(2), m.group(3).split()))
    return found


def test_the_docs_print_benchmark_commands() -> None:
    assert {script for _, script, _ in bench_commands(ROOT / "README.md")} >= {
        "bench/diff.py", "bench/seed.py", "bench/state.py"}


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_benchmark_command_uses_the_venv_and_its_options_exist(doc: Path) -> None:
    for python, script, args in bench_commands(doc):
        assert python == ".venv/bin/python", \
            f"{doc.name}: `{python} {script}`: ponte is installed in .venv, use .venv/bin/python"
        assert (ROOT / script).is_file(), f"{doc.name}: {script} does not exist"
        helped = subprocess.run([sys.executable, script, "--help"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120, check=False)
        assert helped.returncode == 0, helped.stderr[-2000:]
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", " ".join(args)):
            assert flag in helped.stdout, f"{doc.name}: `{script}` has no option {flag}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_make_target_exists(doc: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    for code in code_of(doc):
        for target in re.findall(r"(?:^|&& )make ([\w-]+)", code):
            assert target in targets, f"{doc.name}: `make {target}`: no such target"


PATH = re.compile(r"(?:^|(?<=[\s`(]))((?:etl|tests|bench|cron|mappings|\.ci)/[\w./*@-]*)")


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_file_named_or_linked_exists(doc: Path) -> None:
    text = doc.read_text()
    named = {m.rstrip(".,:") for code in code_of(doc) for m in PATH.findall(code)}
    named |= {m for m in PATH.findall(text) if m.endswith((".py", ".md"))}
    for name in named:
        assert list(ROOT.glob(name.rstrip("/"))), f"{doc.name} names {name}, which does not exist"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path) if path else doc
        assert linked.exists(), f"{doc.name} links {target}, which does not exist"
        if anchor:
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)}
            assert anchor in slugs, f"{doc.name} links #{anchor}, no such heading"


def test_no_doc_names_a_file_that_is_not_in_the_repo() -> None:
    for doc in DOCS:
        for m in re.findall(r"\b([A-Z][A-Z_]+\.md)\b", doc.read_text()):
            assert list(ROOT.rglob(m)), f"{doc.name} refers to {m}, which is not in the repo"


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the ``ponte`` tree, as the words that call it."""
    paths = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths.append((*prefix, name))
        paths += command_paths(sub, (*prefix, name))
    return paths


COMMANDS = command_paths(typer.main.get_command(app))


def test_the_command_tree_is_walked() -> None:
    assert {("sync",), ("watermark", "set"), ("runs", "show"), ("db", "rebind"),
            ("quarantine", "drop"), ("mappings", "check")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    documented = {tuple(words[:len(path)]) for words in ponte_commands(ROOT / "README.md")}
    assert path in documented, f"`ponte {' '.join(path)}` is a command but README.md never " \
                               "shows it (as `ponte " + " ".join(path) + " ...`)"


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_is_listed_by_help(path: tuple[str, ...]) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    parent = runner.invoke(app, [*path[:-1], "--help"], terminal_width=200)
    assert parent.exit_code == 0, parent.output
    listed = parent.output.split("Commands:", 1)[-1] if "Commands:" in parent.output else ""
    assert re.search(rf"^\s+{re.escape(path[-1])}\b", listed, re.MULTILINE), \
        f"`ponte {' '.join(path[:-1])} --help` does not list {path[-1]!r}:\n{parent.output}"
    own = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert own.exit_code == 0 and "Usage:" in own.output, own.output
