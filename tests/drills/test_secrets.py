"""Secrets never leave ponte: a full sync with recognizable credentials, at DEBUG, in text and
JSON log formats, then a run with a wrong app_secret. None of the values may appear in the
logs, the CLI's output, the state database (every table), the run records or the metrics file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

CREDS = {"user_key": "UK-very-secret-ploomes-7731", "app_key": "4815162342007",
         "app_secret": "AS-hush-omie-secret-4242"}
WRONG_SECRET = "AS-wrong-but-still-secret-5150"
WRONG_USER_KEY = "UK-wrong-but-still-secret-9090"


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def dump_state(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def test_no_secret_in_logs_state_runs_metrics_or_errors(drills: ModuleType,
                                                         tmp_path: Path) -> None:
    secrets = list(CREDS.values())
    state, metrics = tmp_path / "state.db", tmp_path / "metrics.prom"
    with drills.sandbox(tmp_path, customers=20, products=6, orders=4, creds=CREDS) as sb:
        outputs: list[str] = []
        sb.faults(error_rate=0.25)  # retries log per-request DEBUG lines
        for fmt in ("text", "json"):
            env = sb.env(state, PONTE_LOG_LEVEL="DEBUG", PONTE_LOG_FORMAT=fmt,
                         PONTE_METRICS_FILE=metrics)
            if fmt == "json":  # something to sync in the second run
                contact = sb.dump("crm", "Contacts")[0]["Id"]
                sb.admin("crm", "PATCH", f"Contacts/{contact}", {"Neighborhood": "Vila Nova"})
            r = drills.ponte(["sync", "--json"], env, tmp_path)
            assert r.rc in (0, 1, 3), r.stderr[-2000:]
            assert "DEBUG" in r.stderr, "the DEBUG lines are part of what is checked"
            outputs += [r.stdout, r.stderr]
            for args in (["status", "--json"], ["runs", "--json"], ["verify", "--json"],
                         ["quarantine", "list", "--json"], ["watermark", "show"]):
                r = drills.ponte(args, env, tmp_path)
                outputs += [r.stdout, r.stderr]
        sb.faults(error_rate=0)
        assert metrics.exists() and "ponte_" in metrics.read_text()
        assert not leaks(metrics.read_text(), secrets)
        for text in outputs:
            assert not leaks(text, secrets), text[-2000:]
        db = dump_state(state)
        assert "INSERT INTO" in db and not leaks(db, secrets)

        # wrong credentials: the error names the problem, never a value
        for var, wrong in (("PONTE_ERP__CREDENTIALS__APP_SECRET", WRONG_SECRET),
                           ("PONTE_CRM__CREDENTIALS__USER_KEY", WRONG_USER_KEY)):
            env = sb.env(tmp_path / "other.db", PONTE_LOG_LEVEL="DEBUG", **{var: wrong})
            r = drills.ponte(["sync"], env, tmp_path)
            assert r.rc != 0
            assert not leaks(r.stdout + r.stderr, [*secrets, wrong]), r.stderr[-2000:]
            r = drills.ponte(["sync", "--json"], env | {"PONTE_LOG_FORMAT": "json"}, tmp_path)
            assert not leaks(r.stdout + r.stderr, [*secrets, wrong]), r.stderr[-2000:]
        db = dump_state(tmp_path / "other.db")
        assert not leaks(db, [*secrets, WRONG_SECRET, WRONG_USER_KEY])
