"""Named connections through the real ``ponte`` app: each company's state apart on PostgreSQL,
``status --all`` over every connection, metrics labelled with the connection, and the CLI's
answer to a mistyped name. Sandbox servers on loopback, a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl.cli import app, hoist_connection
from etl.connections import state_part
from etl.exitcodes import Exit
from etl.state import Store
from tests.ops.conftest import Env

runner = CliRunner()


def ponte(*args: str) -> Any:
    """As the console script runs it: ``--connection`` may follow the command."""
    return runner.invoke(app, hoist_connection(list(args)), catch_exceptions=False)


@dataclass
class Two:
    env: Env
    a: str
    b: str
    folder: Path


@pytest.fixture
def two(cli_env: Env, postgres_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Two]:
    """Connections ``acme-*`` and ``beta-*`` (fresh names: their schemas are new) on one
    PostgreSQL state database, both on the sandbox; their schemas dropped afterwards."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"acme-{tag}", f"beta-{tag}"
    folder = tmp_path / "connections"
    folder.mkdir()
    for name in (a, b):
        (folder / f"{name}.env").write_text("PONTE_SAFETY_LAG_S=0\n")
    monkeypatch.setenv("PONTE_STATE_URL", postgres_url)
    monkeypatch.setenv("PONTE_CONNECTIONS_DIR", str(folder))
    try:
        yield Two(cli_env, a, b, folder)
    finally:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            for name in (a, b):
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{state_part(name)}" CASCADE'))
        engine.dispose()


def test_a_sync_of_one_connection_is_invisible_to_the_other(two: Two, postgres_url: str) -> None:
    synced = ponte("sync", "customers", "--connection", two.a, "--json")
    assert synced.exit_code in (Exit.OK, Exit.QUARANTINED), synced.output
    run_id = json.loads(synced.stdout)["run_id"]

    b = json.loads(ponte("status", "--connection", two.b, "--json").stdout)
    for e in b["entities"]:
        assert e["last_run"] is None, e
        assert all(s["watermark"] is None and s["quarantined"] == 0 for s in e["sides"]), e
    assert json.loads(ponte("runs", "--connection", two.b, "--json").stdout) == []
    with Store.open(postgres_url, connection=two.b) as store:
        assert store.watermarks() == [] and store.runs(limit=10) == []
        assert store.count_snapshots("crm", "customers") == 0
        assert store.links("customers") == []

    a = json.loads(ponte("status", "--connection", two.a, "--json").stdout)
    cust = next(e for e in a["entities"] if e["entity"] == "customers")
    assert cust["last_run"]["id"] == run_id
    assert all(s["watermark"] for s in cust["sides"])
    with Store.open(postgres_url, connection=two.a) as store:
        assert store.count_snapshots("crm", "customers") == 20

    every = ponte("status", "--all", "--json")
    assert every.exit_code == 0, every.output
    doc = json.loads(every.stdout)
    assert sorted(doc["connections"]) == [two.a, two.b]
    by_name = {n: {e["entity"]: e for e in c["entities"]} for n, c in doc["connections"].items()}
    assert by_name[two.a]["customers"]["last_run"]["id"] == run_id
    assert by_name[two.b]["customers"]["last_run"] is None

    table = ponte("status", "--all")
    assert table.exit_code == 0, table.output
    assert two.a in table.stdout and two.b in table.stdout and "connection" in table.stdout


def test_metrics_of_a_connection_carry_its_label_in_its_own_file(two: Two) -> None:
    synced = ponte("sync", "customers", "--connection", two.a)
    assert synced.exit_code in (Exit.OK, Exit.QUARANTINED), synced.output
    set_file = two.env.metrics  # PONTE_METRICS_FILE, shared by the connections
    own = set_file.with_name(f"{set_file.stem}.{two.a}.prom")
    text = own.read_text()
    assert f'ponte_last_run_status{{connection="{two.a}",entity="customers",status="ok"}}' \
           in text or f'connection="{two.a}",entity="customers",status="partial"}} 1' in text
    assert all(f'connection="{two.a}"' in line for line in text.splitlines()
               if line and not line.startswith("#"))
    assert not set_file.exists()  # the single-connection file is not written by a connection


def test_a_mistyped_connection_names_the_closest(two: Two) -> None:
    result = ponte("status", "--connection", two.a[:-1] + "x")
    assert result.exit_code == Exit.CONFIG
    assert f"did you mean {two.a!r}?" in result.stderr
    assert "Traceback" not in result.output


def test_status_all_shows_a_broken_connection_and_the_others(two: Two) -> None:
    (two.folder / "gamma.env").write_text("PONTE_STATE_URL=sqlite:///elsewhere.db\n")
    result = ponte("status", "--all", "--json")
    assert result.exit_code == Exit.CONFIG
    doc = json.loads(result.stdout)["connections"]
    assert sorted(doc) == sorted([two.a, two.b, "gamma"])
    assert "set once for the whole deployment" in doc["gamma"]["error"]
    assert "entities" in doc[two.a] and "entities" in doc[two.b]
    table = ponte("status", "--all")
    assert table.exit_code == Exit.CONFIG and "ERROR" in table.stdout and two.b in table.stdout
    assert "gamma: PONTE_STATE_URL (in gamma.env): set once for the whole deployment" \
        in table.stderr


def test_status_all_refuses_a_connection_and_needs_the_folder(two: Two,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    both = ponte("status", "--all", "--connection", two.a)
    assert both.exit_code == Exit.CONFIG and "--all" in both.stderr
    monkeypatch.delenv("PONTE_CONNECTIONS_DIR")
    unset = ponte("status", "--all")
    assert unset.exit_code == Exit.CONFIG and "PONTE_CONNECTIONS_DIR" in unset.stderr
