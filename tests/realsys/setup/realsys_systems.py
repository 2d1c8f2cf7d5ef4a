"""The two servers realsys.py manages: install, seed, start, probe, stop and restore each."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from realsys_support import (
    BOTTLECRM_REQUIREMENTS,
    HERE,
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    TRYTON_DATABASE,
    TRYTON_REQUIREMENTS,
    Layout,
    SetupError,
    ensure_venv,
    find_bottlecrm_python,
    http,
    port_in_use,
    remove_sqlite,
    run_logged,
    say,
    sqlite_copy,
    write_secret,
)


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
        # the group's other processes (workers) may hold the listening socket a moment longer
        # than the leader lives: a start right after would find the port taken
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and port_in_use(self.port):
            time.sleep(0.05)
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
