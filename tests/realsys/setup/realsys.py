"""Install, start, stop and reset the two real systems the realsys tests run against.

Tryton 8.2 (ERP, REST API) and BottleCRM (PyPI ``django-crm`` 1.35.0, CRM, REST API), each in
its own virtualenv under a cache folder (``.cache/realsys/`` in the repository, or
``PONTE_TEST_REALSYS_DIR``), each with an SQLite database seeded with a company, served on
127.0.0.1 only. The REST key and the personal access token go to ``realsys.env`` in the cache
folder (mode 600), which the tests read.

    python3 tests/realsys/setup/realsys.py up       # install/seed what is missing, start both
    python3 tests/realsys/setup/realsys.py reset    # back to the pristine databases (seconds)
    python3 tests/realsys/setup/realsys.py stop     # stop both servers by their PIDs
    python3 tests/realsys/setup/realsys.py status
    python3 tests/realsys/setup/realsys.py clean    # stop and delete the cache folder

Standard library only, so that it runs before ponte's own virtualenv exists. Every step that
is done is remembered (a stamp file, a pristine database, a live PID), so a second ``up`` with
the servers running only checks them. BottleCRM needs Python >= 3.12: one is looked for on the
machine (``PONTE_TEST_REALSYS_PYTHON`` names one explicitly); when none is found, Tryton is set
up anyway and the command says how to get one, and exits 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


# --------------------------------------------------------------------------- the two systems

class System:
    """One server: its folder, venv, database, pristine copy, PID file and readiness probe."""

    name = ""
    port_env = ""
    stop_signal = signal.SIGTERM

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.home = layout.system(self.name)
        self.venv = self.home / "venv"
        self.pid_file = self.home / "server.pid"
        self.log = self.home / "server.log"

    # subclasses fill these in
    port: int
    database: Path
    pristine: Path

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def install(self) -> None:
        raise NotImplementedError

    def seed(self) -> None:
        """Create the database and seed it; writes ``self.pristine``."""
        raise NotImplementedError

    def server_argv(self) -> list[str]:
        raise NotImplementedError

    def server_env(self) -> dict[str, str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def credentials(self) -> dict[str, str]:
        raise NotImplementedError

    # --- common lifecycle

    def is_set_up(self) -> bool:
        return self.pristine.is_file()

    def set_up(self) -> None:
        self.install()
        if not self.pristine.is_file():
            started = time.monotonic()
            self.stop()
            self.seed()
            say(f"{self.name}: database created and seeded in {time.monotonic() - started:.1f} s")
        if not self.database.is_file():
            sqlite_copy(self.pristine, self.database)

    def pid(self) -> int | None:
        """The PID in the PID file if that process is alive and is this server (not a reuse)."""
        try:
            pid = int(self.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None
        for _ in range(100):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                return None
            # empty for a zombie, and for a moment in the middle of exec (just started)
            if cmdline or _gone(pid):
                break
            time.sleep(0.01)
        return pid if str(self.venv) in cmdline else None

    def start(self) -> None:
        """Start the server unless it is running; returns without waiting for it to be ready."""
        if self.pid() is not None:
            return
        if port_in_use(self.port):
            raise SetupError(f"{self.name}: 127.0.0.1:{self.port} is taken by another process; "
                             f"stop it or set {self.port_env}")
        with self.log.open("a", encoding="utf-8") as out:
            proc = subprocess.Popen(self.server_argv(), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=self.server_env(),
                                    cwd=self.home, start_new_session=True)
        self.pid_file.write_text(f"{proc.pid}\n", encoding="ascii")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise SetupError(f"{self.name}: the server exited at start; log: {self.log}")
            if self.ready():
                return
            time.sleep(0.1)
        raise SetupError(f"{self.name}: not ready after {READY_TIMEOUT_S:.0f} s; log: {self.log}")

    def stop(self, *, at_once: bool = False) -> bool:
        """Stop the server by its PID; True if one was running.

        Politely (its stop signal, then KILL after a while), or ``at_once``: KILL to the
        server's process group (its own session, so its workers and nothing else), for a reset
        that throws the database away anyway."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        if not at_once:
            os.kill(pid, self.stop_signal)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while time.monotonic() < deadline and not _gone(pid):
                time.sleep(0.05)
        if not _gone(pid):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            while not _gone(pid):
                time.sleep(0.02)
        return True

    # True when the server keeps no database state between requests, so the pristine copy can
    # be written into the live database (SQLite's backup API, under its locks) with no restart
    restores_live = False

    def restore(self) -> None:
        """Put the pristine database back: live when the server allows it, else stop, copy
        the file (no stale -wal/-shm left to replay onto it) and start again."""
        if self.restores_live and self.pid() is not None:
            with sqlite3.connect(self.pristine) as src, \
                    sqlite3.connect(self.database, timeout=30) as dst:
                src.backup(dst)
            return
        self.stop(at_once=True)
        sqlite_copy(self.pristine, self.database)
        self.start()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie left for its parent to reap counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


class Tryton(System):
    name = "tryton"
    port_env = "PONTE_TEST_REALSYS_TRYTON_PORT"

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.port = layout.tryton_port
        self.db_dir = self.home / "db"
        self.database = self.db_dir / f"{TRYTON_DATABASE}.sqlite"
        self.pristine = self.home / "pristine" / f"{TRYTON_DATABASE}.sqlite"
        self.config = self.home / "trytond.conf"
        self.key_file = self.home / "rest.key"

    def install(self) -> None:
        ensure_venv(self.home, sys.executable, TRYTON_REQUIREMENTS)

    def write_config(self) -> None:
        self.config.write_text(
            "[database]\nuri = sqlite://\n"
            f"path = {self.db_dir}\n"
            "[web]\n"
            f"listen = 127.0.0.1:{self.port}\n"
            "[session]\nmax_attempt = 1000\n", encoding="utf-8")

    def seed(self) -> None:
        self.write_config()
        self.db_dir.mkdir(parents=True, exist_ok=True)
        remove_sqlite(self.database)
        self.database.touch()
        log = self.home / "seed.log"
        passfile = self.home / "admin.pass"
        write_secret(passfile, secrets.token_hex(16) + "\n")
        env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
        admin = str(self.venv / "bin" / "trytond-admin")
        # one call initialises the database and activates the modules (two calls: ~9 s more)
        run_logged("trytond-admin", [admin, "-c", str(self.config), "-d", TRYTON_DATABASE,
                                     "--all", "-u", "party", "product", "sale",
                                     "--activate-dependencies", "--email", "admin@example.com"],
                   log, env=env)
        out = run_logged("seeding the company and the REST key",
                         [str(self.venv / "bin" / "python"), str(HERE / "tryton_seed.py"),
                          str(self.config), TRYTON_DATABASE], log, env=env,
                         secret_output=True)
        seeded = json.loads(out.strip().splitlines()[-1])
        write_secret(self.key_file, json.dumps(seeded) + "\n")
        self.pristine.parent.mkdir(parents=True, exist_ok=True)
        sqlite_copy(self.database, self.pristine)

    def server_argv(self) -> list[str]:
        return [str(self.venv / "bin" / "python"), str(HERE / "tryton_serve.py"),
                "127.0.0.1", str(self.port)]

    def server_env(self) -> dict[str, str]:
        return {**os.environ, "TRYTOND_CONFIG": str(self.config),
                "TRYTOND_DATABASE_NAMES": TRYTON_DATABASE}

    def ready(self) -> bool:
        body = json.dumps({"method": "common.server.version", "params": [], "id": 1}).encode()
        status, answer = http("POST", f"{self.url()}/rpc/", body, timeout=2.0)
        return status == 200 and b'"result"' in answer

    def credentials(self) -> dict[str, str]:
        seeded = json.loads(self.key_file.read_text(encoding="utf-8"))
        return {"TRYTON_URL": self.url(), "TRYTON_DATABASE": TRYTON_DATABASE,
                "TRYTON_KEY": seeded["key"], "TRYTON_COMPANY": str(seeded["company"])}


class BottleCrm(System):
    name = "bottlecrm"
    port_env = "PONTE_TEST_REALSYS_BOTTLECRM_PORT"
    stop_signal = signal.SIGINT  # gunicorn's quick shutdown (TERM waits for requests to end)
    restores_live = True  # Django opens a connection per request (CONN_MAX_AGE 0), no DB cache

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.port = layout.bottlecrm_port
        self.database = self.home / "db.sqlite3"
        self.pristine = self.home / "pristine" / "db.sqlite3"
        self.secret_file = self.home / "django.secret"
        self.token_file = self.home / "token"

    def install(self) -> None:
        stamp = self.venv / ".ponte-installed"
        wanted = "\n".join(BOTTLECRM_REQUIREMENTS) + "\n"
        done = stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted
        python = str(self.venv / "bin" / "python") if done else (
            find_bottlecrm_python(self.layout, os.environ))
        ensure_venv(self.home, python, BOTTLECRM_REQUIREMENTS)

    def django_env(self) -> dict[str, str]:
        if not self.secret_file.is_file():
            write_secret(self.secret_file, secrets.token_urlsafe(48) + "\n")
        return {**os.environ, "DJANGO_SETTINGS_MODULE": "ponte_bottlecrm_settings",
                "PYTHONPATH": str(HERE), "PONTE_BOTTLECRM_DB": str(self.database),
                "SECRET_KEY": self.secret_file.read_text(encoding="utf-8").strip(),
                "ENV_TYPE": "dev"}

    def seed(self) -> None:
        log = self.home / "seed.log"
        remove_sqlite(self.database)
        env = self.django_env()
        run_logged("django-admin migrate --run-syncdb",
                   [str(self.venv / "bin" / "django-admin"), "migrate", "--run-syncdb",
                    "--noinput"], log, env=env, cwd=self.home)
        out = run_logged("seeding the org, user and token",
                         [str(self.venv / "bin" / "python"), str(HERE / "bottlecrm_seed.py")],
                         log, env=env, cwd=self.home, secret_output=True)
        seeded = json.loads(out.strip().splitlines()[-1])
        write_secret(self.token_file, json.dumps(seeded) + "\n")
        self.pristine.parent.mkdir(parents=True, exist_ok=True)
        sqlite_copy(self.database, self.pristine)

    def server_argv(self) -> list[str]:
        return [str(self.venv / "bin" / "gunicorn"), "crm.wsgi:application",
                "-b", f"127.0.0.1:{self.port}", "-w", "2", "--access-logfile", "-",
                "--preload",  # import Django once, then fork: ready in half the time
                # gunicorn >= 26 opens a control socket in $HOME by default: one per machine,
                # so a second server (another checkout, CI) would collide on it
                "--no-control-socket"]

    def server_env(self) -> dict[str, str]:
        return self.django_env()

    def ready(self) -> bool:
        status, _ = http("GET", f"{self.url()}/healthz/", timeout=2.0)
        return status == 200

    def credentials(self) -> dict[str, str]:
        seeded = json.loads(self.token_file.read_text(encoding="utf-8"))
        return {"BOTTLECRM_URL": self.url(), "BOTTLECRM_TOKEN": seeded["token"],
                "BOTTLECRM_ORG": seeded["org"], "BOTTLECRM_TAX_ID_FIELD": seeded["tax_id_field"]}


# --------------------------------------------------------------------------- commands

def write_env_file(layout: Layout, systems: Sequence[System]) -> None:
    lines = ["# Written by tests/realsys/setup/realsys.py: the servers' addresses and credentials.",
             "# Secrets: keep this file private (mode 600)."]
    for system in systems:
        if system.is_set_up():
            lines += [f"{key}={value}" for key, value in system.credentials().items()]
    write_secret(layout.env_file, "\n".join(lines) + "\n")


def bring_up(system: System) -> str | None:
    """Install, seed and start one system and wait for it; the problem, if any."""
    try:
        system.set_up()
        system.start()
        system.wait_ready()
    except SetupError as exc:
        return str(exc)
    say(f"{system.name}: ready on {system.url()}")
    return None


def cmd_up(layout: Layout) -> int:
    """Both systems side by side (their installs are mostly waiting on the network and disk)."""
    started = time.monotonic()
    layout.root.mkdir(parents=True, exist_ok=True)
    systems = (Tryton(layout), BottleCrm(layout))
    with ThreadPoolExecutor(max_workers=len(systems)) as pool:
        problems = [problem for problem in pool.map(bring_up, systems) if problem]
    write_env_file(layout, systems)
    say(f"credentials in {layout.env_file}; {time.monotonic() - started:.1f} s")
    for problem in problems:
        print(f"realsys: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_stop(layout: Layout) -> int:
    for system in (Tryton(layout), BottleCrm(layout)):
        say(f"{system.name}: {'stopped' if system.stop() else 'was not running'}")
    return 0


def cmd_reset(layout: Layout) -> int:
    started = time.monotonic()
    systems = [s for s in (Tryton(layout), BottleCrm(layout)) if s.is_set_up()]
    if not systems:
        raise SetupError(f"nothing is set up in {layout.root}; run `make realsys` first")
    for system in systems:
        system.restore()
    for system in systems:
        system.wait_ready()
    say(f"reset {', '.join(s.name for s in systems)} to their pristine databases in "
        f"{time.monotonic() - started:.1f} s")
    return 0


def cmd_status(layout: Layout) -> int:
    for system in (Tryton(layout), BottleCrm(layout)):
        pid = system.pid()
        state = ("not set up" if not system.is_set_up() else
                 f"running (pid {pid}) on {system.url()}" if pid is not None else "stopped")
        say(f"{system.name}: {state}")
    say(f"cache folder {layout.root}")
    return 0


def cmd_clean(layout: Layout) -> int:
    cmd_stop(layout)
    if layout.root.exists():
        shutil.rmtree(layout.root)
    say(f"removed {layout.root}")
    return 0


def cmd_python(layout: Layout) -> int:
    say(f"Python for BottleCRM: {find_bottlecrm_python(layout, os.environ)}")
    return 0


COMMANDS = {"up": cmd_up, "stop": cmd_stop, "reset": cmd_reset, "status": cmd_status,
            "clean": cmd_clean, "python": cmd_python}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS), nargs="?", default="up")
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](layout_from_env(os.environ))
    except SetupError as exc:
        print(f"realsys: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
