"""A production install works: every runtime import is a declared dependency, the lock pins them,
the wheel carries every package and the shipped mappings, and a runtime-only install (no dev
extra, not editable) runs ``ponte demo`` from an unrelated folder."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_import_under_etl_is_a_declared_runtime_dependency() -> None:
    declared = _names(PROJECT["dependencies"])
    dists = packages_distributions()
    missing: dict[str, list[str]] = {}
    for module in sorted((ROOT / "etl").rglob("*.py")):
        for name in _imports(module):
            if name in sys.stdlib_module_names or name in ("__future__", "etl"):
                continue
            owners = {canonicalize_name(d) for d in dists.get(name, [])}
            assert owners, f"{module.relative_to(ROOT)} imports {name!r}, which no installed " \
                           "distribution provides"
            if not owners & declared:
                missing.setdefault(", ".join(sorted(owners)), []).append(
                    f"{module.relative_to(ROOT)} ({name})")
    assert not missing, "imported under etl/ but not in [project] dependencies: " + "; ".join(
        f"{dist} by {', '.join(where)}" for dist, where in missing.items())


#: Declared runtime dependencies that no module imports by name, and why each one is needed.
USED_WITHOUT_IMPORT = {
    "psycopg": "SQLAlchemy loads it for a postgresql+psycopg:// state URL",
    "tzdata": "zoneinfo's time zone data where the operating system has none",
    "httptools": "uvicorn's HTTP parser, which the simulators' servers name (http='httptools')",
}


def test_every_declared_runtime_dependency_is_imported_under_etl() -> None:
    """A dependency nothing imports is dead weight in every install: it goes, or it is listed
    in USED_WITHOUT_IMPORT with the reason it is needed."""
    dists = packages_distributions()
    imported: set[str] = set()
    for module in (ROOT / "etl").rglob("*.py"):
        for name in _imports(module):
            imported |= {canonicalize_name(d) for d in dists.get(name, [])}
    declared = _names(PROJECT["dependencies"])
    assert set(USED_WITHOUT_IMPORT) <= declared, \
        f"USED_WITHOUT_IMPORT names undeclared packages: {set(USED_WITHOUT_IMPORT) - declared}"
    unused = sorted(declared - imported - set(USED_WITHOUT_IMPORT))
    assert not unused, f"declared in [project] dependencies but imported nowhere under etl/: " \
                       f"{unused}"


def test_requirements_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = _locked()
    wanted = [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["dev"]]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements.lock does not pin {req.name} (pyproject: {text!r})"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject's {text!r}"


def test_the_wheel_lists_every_package_of_etl() -> None:
    """pyproject lists the packages by hand (for the shipped mappings): none may be forgotten."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(d.relative_to(ROOT).parts)
        for d in (ROOT / "etl").rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    } | {"etl"}
    assert on_disk - listed == set(), f"packages missing from pyproject: {on_disk - listed}"
    pairs = {p.name for p in (ROOT / "mappings").iterdir() if p.is_dir()}
    assert {f"etl.shipped_mappings.{pair}" for pair in pairs} <= listed
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["etl.shipped_mappings"] == "mappings"
    for pair in pairs:
        assert "*.yaml" in PYPROJECT["tool"]["setuptools"]["package-data"][
            f"etl.shipped_mappings.{pair}"]


def _copy_source(dest: Path) -> Path:
    """The checkout without its venv, caches and build leftovers: pip builds in the copy."""
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                                    "*.db", "*.db-*", ".env", ".pytest_cache", ".hypothesis",
                                    ".ruff_cache", "bench")
    return Path(shutil.copytree(ROOT, dest, ignore=ignore))


def _run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str],
         timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_runtime_only_install_runs_demo_from_any_folder(tmp_path: Path) -> None:
    if not os.environ.get("PONTE_TEST_INSTALL"):
        pytest.skip("builds a fresh venv from the package index (minutes): set "
                    "PONTE_TEST_INSTALL=1 to run it (.ci/run does)")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PONTE_", "VIRTUAL_ENV", "PYTHON"))}
    source = _copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env, timeout=300)
    assert made.returncode == 0, made.stderr
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
                "-c", source / "requirements.lock", "."], cwd=source, env=env, timeout=1500)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    shutil.rmtree(source)  # the installed ponte alone: no checkout, no mappings/ next to it
    frozen = _run([venv / "bin" / "python", "-m", "pip", "freeze", "--all",
                   "--exclude-editable"], cwd=tmp_path, env=env, timeout=120)
    assert frozen.returncode == 0, frozen.stderr
    installed = dict(line.split("==", 1) for line in frozen.stdout.splitlines() if "==" in line)
    pins = _locked()
    unpinned = {name: version for name, version in installed.items()
                if canonicalize_name(name) not in {"pip", "setuptools", "wheel", "ponte"}
                and pins.get(canonicalize_name(name)) != version}
    assert not unpinned, f"installed but not pinned so by requirements.lock: {unpinned}"
    assert "pytest" not in {canonicalize_name(n) for n in installed}, \
        "the runtime-only install must not bring the dev extra"

    work = tmp_path / "elsewhere"
    work.mkdir()
    ponte = venv / "bin" / "ponte"
    demo = _run([ponte, "demo"], cwd=work, env=env, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "3. nothing changed since" in demo.stdout
    checked = _run([ponte, "mappings", "check"], cwd=work, env=env, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"^customers: ok", checked.stdout, re.MULTILINE), checked.stdout
    assert "site-packages" in _run(
        [venv / "bin" / "python", "-c",
         "from etl.settings import Settings; print(Settings().mappings_dir)"],
        cwd=work, env=env, timeout=60).stdout
    status = _run([ponte, "status"], cwd=work, env=env, timeout=120)
    assert status.returncode == 0, status.stdout[-2000:] + status.stderr[-2000:]
