"""Settings, logging of steps, secrets on disk, finding a Python >= 3.12, virtualenvs and
SQLite copies: the parts of realsys.py that know nothing of Tryton or BottleCRM."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]

TRYTON_REQUIREMENTS = ("trytond>=8.2,<8.3", "trytond-party>=8.2,<8.3",
                       "trytond-product>=8.2,<8.3", "trytond-sale>=8.2,<8.3")
BOTTLECRM_REQUIREMENTS = ("django-crm==1.35.0", "gunicorn")
TRYTON_DATABASE = "ponte"
MIN_BOTTLECRM_PYTHON = (3, 12)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class SetupError(Exception):
    """A step failed; the message names the step and where its log is."""


@dataclass(frozen=True)
class Layout:
    """Where everything lives; built once from the environment by :func:`layout_from_env`."""

    root: Path
    tryton_port: int
    bottlecrm_port: int
    python: str | None  # an explicit Python >= 3.12 for BottleCRM

    @property
    def env_file(self) -> Path:
        return self.root / "realsys.env"

    def system(self, name: str) -> Path:
        return self.root / name


def layout_from_env(environ: Mapping[str, str]) -> Layout:
    def port(name: str, default: int) -> int:
        raw = environ.get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise SetupError(f"{name}={raw!r}: not a port number") from None
        if not 1024 <= value <= 65535:
            raise SetupError(f"{name}={raw!r}: must be between 1024 and 65535")
        return value

    root = environ.get("PONTE_TEST_REALSYS_DIR") or str(ROOT / ".cache" / "realsys")
    return Layout(root=Path(root).resolve(),
                  tryton_port=port("PONTE_TEST_REALSYS_TRYTON_PORT", 8000),
                  bottlecrm_port=port("PONTE_TEST_REALSYS_BOTTLECRM_PORT", 8010),
                  python=environ.get("PONTE_TEST_REALSYS_PYTHON") or None)


# --------------------------------------------------------------------------- small helpers

def say(message: str) -> None:
    print(f"realsys: {message}", flush=True)


def write_secret(path: Path, text: str) -> None:
    """Write a file readable by its owner only, created so (never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def run_logged(step: str, argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
               cwd: Path | None = None, secret_output: bool = False) -> str:
    """Run one step, its output appended to ``log``; on failure raise naming the step.

    With ``secret_output`` the standard output (a key, a token) is returned but not logged."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=out, env=dict(env or os.environ),
                              cwd=cwd, text=True, check=False)
        out.write("(output not logged: it holds a secret)\n" if secret_output else proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise SetupError(f"{step} failed (exit {proc.returncode}); log: {log}\n{tail}")
    return proc.stdout


def python_version(executable: str) -> tuple[int, int] | None:
    try:
        proc = subprocess.run([executable, "-c", "import sys, venv; print(*sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    major, minor = proc.stdout.split()
    return int(major), int(minor)


def python_candidates(environ: Mapping[str, str]) -> list[str]:
    """Interpreters that may be Python >= 3.12, best first: on PATH, then pyenv's versions.

    pyenv's shims on PATH fail for a version that is installed but not selected, hence the
    versions folder too; each candidate is run to learn its version."""
    found: list[str] = []
    for name in ("python3.13", "python3.12", "python3.14", "python3"):
        path = shutil.which(name, path=environ.get("PATH"))
        if path:
            found.append(path)
    pyenv_root = environ.get("PYENV_ROOT") or str(Path(environ.get("HOME", "~")).expanduser()
                                                  / ".pyenv")
    found += sorted(glob.glob(f"{pyenv_root}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    return list(dict.fromkeys(found))


NO_PYTHON_HELP = (
    "BottleCRM (django-crm 1.35.0) needs Python >= 3.12 and none was found (tried: {tried}). "
    "Install one (a python3.12 or python3.13 from your OS packages, `pyenv install 3.12`, or "
    "`uv python install 3.12`) and put it on PATH, or name it with "
    "PONTE_TEST_REALSYS_PYTHON=/path/to/python3.12; then run `make realsys` again.")


def find_bottlecrm_python(layout: Layout, environ: Mapping[str, str]) -> str:
    if layout.python:
        version = python_version(layout.python)
        if version is None:
            raise SetupError(f"PONTE_TEST_REALSYS_PYTHON={layout.python!r}: does not run as a "
                             "Python with venv")
        if version < MIN_BOTTLECRM_PYTHON:
            raise SetupError(f"PONTE_TEST_REALSYS_PYTHON={layout.python!r} is Python "
                             f"{version[0]}.{version[1]}; BottleCRM needs Python >= 3.12")
        return layout.python
    tried = python_candidates(environ)
    for candidate in tried:
        version = python_version(candidate)
        if version is not None and version >= MIN_BOTTLECRM_PYTHON:
            return candidate
    raise SetupError(NO_PYTHON_HELP.format(tried=", ".join(tried) or "nothing on PATH"))


def ensure_venv(home: Path, python: str, requirements: Sequence[str]) -> Path:
    """A virtualenv at ``home/venv`` with ``requirements``; rebuilt only when they change."""
    venv = home / "venv"
    stamp = venv / ".ponte-installed"
    wanted = "\n".join(requirements) + "\n"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        return venv
    log = home / "install.log"
    started = time.monotonic()
    say(f"{home.name}: installing {', '.join(requirements)} with {python} into {venv} "
        f"(log: {log})")
    if venv.exists():
        shutil.rmtree(venv)
    run_logged("creating the virtualenv", [python, "-m", "venv", str(venv)], log)
    run_logged("pip install", [str(venv / "bin" / "python"), "-m", "pip", "install",
                               "--disable-pip-version-check", *requirements], log)
    stamp.write_text(wanted, encoding="utf-8")
    say(f"{home.name}: installed in {time.monotonic() - started:.1f} s")
    return venv


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (WAL included) into a fresh ``target``."""
    remove_sqlite(target)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    # closing the last connection checkpoints the WAL; leave no stale -wal/-shm beside the copy


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""
