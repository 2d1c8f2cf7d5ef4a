"""The status page and /metrics of ``ponte serve`` in a deployment of named connections: every
connection summarised on the page, the page's own connection named, metrics labelled. Sandbox
servers on loopback, each connection's own SQLite state file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from etl.cli import app, hoist_connection
from etl.connections import settings_for
from etl.exitcodes import Exit
from tests.ops.conftest import Env
from tests.serve.conftest import TOKEN, status_app

runner = CliRunner()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def folder(cli_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Connections ``acme`` (synced once) and ``beta`` (never run), and ``gamma``, whose file
    sets what only the deployment may."""
    folder = tmp_path / "connections"
    folder.mkdir()
    for name in ("acme", "beta"):
        (folder / f"{name}.env").write_text(
            f"PONTE_SAFETY_LAG_S=0\nPONTE_SERVE__STATUS_TOKEN={TOKEN}\n")
    monkeypatch.setenv("PONTE_CONNECTIONS_DIR", str(folder))
    synced = runner.invoke(app, hoist_connection(["sync", "customers", "--connection", "acme"]),
                           catch_exceptions=False)
    assert synced.exit_code in (Exit.OK, Exit.QUARANTINED), synced.output
    (folder / "gamma.env").write_text("PONTE_BROKER_URL=amqp://other//\n")
    return folder


def _row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-connection="{name}">(.*?)</tr>', html, re.DOTALL)
    assert match, f"no row for {name}"
    return match.group(1)


def test_the_page_summarises_every_connection(folder: Path) -> None:
    c = TestClient(status_app(settings_for("beta", folder)), base_url="http://ponte.test")
    r = c.get("/", headers=AUTH)
    assert r.status_code == 200, r.text
    assert '<span id="connection">beta</span>' in r.text
    acme, beta, gamma = (_row(r.text, n) for n in ("acme", "beta", "gamma"))
    assert "sync" in acme and re.search(r'class="(ok|partial)"', acme) and "no runs" not in acme
    assert "no runs yet" in beta and "(this page)" in beta and "(this page)" not in acme
    assert "PONTE_BROKER_URL" in gamma and "whole deployment" in gamma
    # the page's own figures are beta's: nothing of acme's run
    assert "no runs yet" in r.text.split('id="entities"')[1].split("</section>")[0]


def test_metrics_of_the_page_carry_its_connection(folder: Path) -> None:
    c = TestClient(status_app(settings_for("acme", folder)), base_url="http://ponte.test")
    r = c.get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    series = [line for line in r.text.splitlines() if line and not line.startswith("#")]
    assert series and all('connection="acme"' in line for line in series)
    assert any(line.startswith('ponte_last_run_timestamp_seconds{connection="acme",'
                               'entity="customers"}') for line in series)


def test_without_the_folder_the_page_has_no_connections(folder: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for("acme", folder)
    monkeypatch.delenv("PONTE_CONNECTIONS_DIR")
    c = TestClient(status_app(type(settings)()), base_url="http://ponte.test")
    r = c.get("/", headers=AUTH)
    assert r.status_code == 200 and 'id="connections"' not in r.text
