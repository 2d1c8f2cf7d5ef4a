"""What ``ponte`` prints where an operator reads it: full-width tables when stdout is a pipe or a
file (cron logs), live progress on a terminal only, and a readable ``runs show``. The real
console script runs in a subprocess, through a pipe or a pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from etl.cli import app
from etl.exitcodes import Exit
from tests.ops.conftest import Env

PONTE = Path(sys.executable).parent / "ponte"  # the installed console script
runner = CliRunner()


def _env(cli_env: Env, **extra: str) -> dict[str, str]:
    """The environment of a cron job: no terminal size hints."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**env, **cli_env.env, **extra}


def piped(cli_env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PONTE), *args], env=_env(cli_env), stdin=subprocess.DEVNULL,
                          check=False, capture_output=True, text=True, timeout=120,
                          cwd=cli_env.metrics.parent.parent)


def in_terminal(cli_env: Env, *args: str) -> tuple[int, str]:
    """Run ``ponte`` on a pseudo-terminal (100 columns) and return its exit code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen([str(PONTE), *args], env=_env(cli_env, TERM="xterm-256color"),
                            stdin=slave, stdout=slave, stderr=slave,
                            cwd=cli_env.metrics.parent.parent)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_tables_are_never_cut_when_stdout_is_a_pipe(cli_env: Env) -> None:
    sync = piped(cli_env, "sync")
    assert sync.returncode == Exit.OK, sync.stderr
    run_id = json.loads(piped(cli_env, "runs", "--json").stdout)[0]["id"]
    outputs = {
        "sync": sync.stdout,
        "status": piped(cli_env, "status").stdout,
        "runs": piped(cli_env, "runs").stdout,
        "runs show": piped(cli_env, "runs", "show", run_id[:8]).stdout,
    }
    for name, text in outputs.items():
        assert text.strip(), name
        assert "…" not in text, f"`ponte {name}` cut a cell:\n{text}"
    # whole rows stay on one line, however wide
    assert any("read = records read" in line and "quar. = quarantined" in line
               for line in outputs["sync"].splitlines()), outputs["sync"]
    assert any(line.startswith("API calls: crm") and "erp" in line
               for line in outputs["sync"].splitlines()), outputs["sync"]
    status_rows = [line for line in outputs["status"].splitlines() if "customers" in line]
    assert any("(*/5 * * * *)" in line and "read/new/upd" not in line for line in status_rows)
    assert "read/new/upd" in outputs["status"]
    assert any(run_id[:8] in line and "customers,products,orders" in line
               for line in outputs["runs"].splitlines())


def test_sync_shows_live_progress_on_a_terminal_only(cli_env: Env) -> None:
    code, text = in_terminal(cli_env, "sync")
    assert code == Exit.OK, text
    for phase in ("customers: read crm", "customers: read erp", "customers: write",
                  "products: read erp", "orders: read crm"):
        assert phase in text, text
    assert "rec/s" in text
    assert "customers crm" in text  # the report follows the progress display

    cli_env.sandbox.crm.ui_update("Contacts", 1, {"Email": "novo@exemplo.com.br"})
    piped_sync = piped(cli_env, "sync")
    assert piped_sync.returncode == Exit.OK, piped_sync.stderr
    assert "customers crm" in piped_sync.stdout
    for text in (piped_sync.stdout, piped_sync.stderr):
        assert "rec/s" not in text and "customers: read crm" not in text


def test_json_on_a_terminal_prints_only_the_object(cli_env: Env) -> None:
    code, text = in_terminal(cli_env, "sync", "--json")
    assert code == Exit.OK, text
    assert "rec/s" not in text
    assert json.loads(text[text.index("{"):text.rindex("}") + 1])["status"] == "ok"


def ponte(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_runs_show_is_a_readable_summary_and_json_stays_raw(cli_env: Env) -> None:
    assert ponte("sync").exit_code == Exit.OK
    run_id = json.loads(ponte("runs", "--json").stdout)[0]["id"]
    shown = ponte("runs", "show", run_id[:8])
    text = shown.stdout
    assert shown.exit_code == 0
    lines = text.splitlines()
    for key, value in (("run", run_id), ("kind", "sync"), ("status", "ok"),
                       ("entities", "customers, products, orders")):
        assert any(line.split() == [key, *value.split()] for line in lines), text
    assert any(line.startswith("started ") for line in lines)
    assert any(line.startswith("finished ") and "took" in line for line in lines)
    assert any(line.startswith("API calls ") and "crm" in line for line in lines)
    assert "runs (newest first)" not in text and "{" not in text  # no raw JSON, no list title

    raw = json.loads(ponte("runs", "show", run_id[:8], "--json").stdout)
    assert raw["id"] == run_id
    for entity, counts in raw["report"]["entities"].items():
        for side in ("crm", "erp"):
            row = next(line.split() for line in lines
                       if line.split()[:2] == [entity, side])
            c = counts[side]
            assert row[2:8] == [str(c[k]) for k in ("read", "created", "updated", "unchanged",
                                                    "quarantined", "skipped")], text
    assert raw["report"]["entities"]["customers"]["crm"]["read"] > 0


def test_runs_show_names_the_error_of_a_failed_run(cli_env: Env,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONTE_CRM__CREDENTIALS__USER_KEY", "wrong-key-4711")  # the CRM refuses it
    assert ponte("sync", "customers").exit_code == Exit.FAILED
    run = json.loads(ponte("runs", "--json").stdout)[0]
    text = ponte("runs", "show", run["id"]).stdout
    error = next(line for line in text.splitlines() if line.startswith("error "))
    assert run["report"]["error"] in error and "crm" in error
    assert any(line.split()[:2] == ["status", "failed"] for line in text.splitlines())
    assert "wrong-key-4711" not in text
