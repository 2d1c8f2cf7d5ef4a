"""The status routes through Starlette's TestClient: who may see them (403 when nothing is
configured, 401 on a wrong or missing credential), /healthz, /metrics, an empty state, and the
page's figures against ``ponte status --json``."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from etl.cli import app as cli_app
from etl.settings import Settings
from tests.serve.conftest import TOKEN, Env, add_events, quarantine_one, status_app

runner = CliRunner()


def settings_for(where: Path | str, **serve: str) -> Settings:
    """Settings on a state database: a URL, or a folder for a new SQLite file."""
    url = where if isinstance(where, str) else f"sqlite:///{where / 'state.db'}"
    return Settings(_env_file=None, state_url=url, serve=serve)


def client(settings: Settings) -> TestClient:
    return TestClient(status_app(settings), base_url="http://ponte.test")


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_nothing_configured_answers_403_naming_the_setting_but_healthz_is_open(
        tmp_path: Path) -> None:
    c = client(settings_for(tmp_path))
    for path in ("/", "/metrics"):
        r = c.get(path)
        assert r.status_code == 403, path
        assert "PONTE_SERVE__STATUS_TOKEN" in r.text and "<html" not in r.text
    r = c.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")


def test_token_as_bearer_or_query_and_wrong_ones_get_401_without_data(tmp_path: Path) -> None:
    c = client(settings_for(tmp_path, status_token=TOKEN))
    assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get(f"/?token={TOKEN}").status_code == 200
    assert c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    for kwargs in ({}, {"params": {"token": TOKEN + "x"}},
                   {"headers": {"Authorization": "Bearer nope"}},
                   {"headers": basic("admin", TOKEN)}):  # basic auth is not configured
        for path in ("/", "/metrics"):
            r = c.get(path, **kwargs)  # type: ignore[arg-type]
            assert r.status_code == 401, (path, kwargs)
            assert r.headers["www-authenticate"] == 'Bearer realm="ponte"'
            assert "ponte_" not in r.text and "<table" not in r.text and TOKEN not in r.text


def test_basic_auth_and_either_when_both_are_configured(tmp_path: Path) -> None:
    c = client(settings_for(tmp_path, status_user="ops", status_password="pw:with colon"))
    assert c.get("/", headers=basic("ops", "pw:with colon")).status_code == 200
    for headers in (basic("ops", "wrong"), basic("root", "pw:with colon"), {},
                    {"Authorization": "Basic !!notbase64"}):
        r = c.get("/", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="ponte"'
    both = client(settings_for(tmp_path, status_user="ops", status_password="pw",
                               status_token=TOKEN))
    assert both.get("/", headers=basic("ops", "pw")).status_code == 200
    assert both.get(f"/metrics?token={TOKEN}").status_code == 200
    r = both.get("/", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="ponte"'


def test_a_user_without_a_password_is_not_a_configured_login(tmp_path: Path) -> None:
    r = client(settings_for(tmp_path, status_user="ops")).get("/", headers=basic("ops", ""))
    assert r.status_code == 403 and "PONTE_SERVE__STATUS_PASSWORD" in r.text


def test_healthz_503_when_the_state_cannot_be_opened_without_the_password(
        tmp_path: Path) -> None:
    missing = Settings(_env_file=None, state_url=f"sqlite:///{tmp_path}/no/such/dir/state.db")
    r = client(missing).get("/healthz")
    assert r.status_code == 503 and "PONTE_STATE_URL" in r.text, r.text
    pg = Settings(_env_file=None, serve={"status_token": TOKEN},
                  state_url="postgresql+psycopg://ponte:hunter2pw@127.0.0.1:1/ponte")
    for path in ("/healthz", f"/?token={TOKEN}", f"/metrics?token={TOKEN}"):
        r = client(pg).get(path)
        assert r.status_code == 503 and "PONTE_STATE_URL" in r.text, (path, r.text)
        assert "hunter2pw" not in r.text and "***" in r.text


def test_empty_state_page_says_so(store_url: str) -> None:
    r = client(settings_for(store_url, status_token=TOKEN)).get(f"/?token={TOKEN}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    text = r.text
    assert '<meta http-equiv="refresh" content="30">' in text
    assert "no runs yet" in text and "nothing in quarantine" in text
    assert "no verify yet" in text and "no active alerts" in text and "none pending" in text
    assert "<script" not in text  # no JavaScript needed
    assert 'data-entity="customers"' in text  # the mapped entities, never synced


LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$')


def test_metrics_text_has_the_backlog_and_alert_series(store_url: str) -> None:
    settings = settings_for(store_url, status_token=TOKEN)
    c = client(settings)
    quarantine_one(settings.state_url)
    add_events(settings.state_url)
    r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    values = {}
    for line in r.text.splitlines():
        if not line.startswith("#"):
            m = LINE.match(line)
            assert m, f"not exposition format: {line!r}"
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    assert values['ponte_webhook_events{connection="",status="pending"}'] == 2
    assert values['ponte_webhook_events{connection="",status="failed"}'] == 1
    assert values['ponte_webhook_events{connection="",status="ignored"}'] == 0
    assert 0 <= values['ponte_webhook_oldest_pending_age_seconds{connection=""}'] < 600
    assert values['ponte_alert_active{connection="",condition="drift:customers"}'] == 1
    assert values['ponte_alert_active{connection="",condition="run_failed:orders"}'] == 0
    assert values['ponte_quarantine_records{connection="",entity="customers"}'] == 1
    for name in ("ponte_webhook_events", "ponte_webhook_oldest_pending_age_seconds",
                 "ponte_alert_active"):
        assert re.search(rf"^# HELP {name} \w", r.text, re.MULTILINE), name
        assert f"# TYPE {name} gauge" in r.text


def test_page_escapes_vendor_text_and_shows_backlog_and_alerts(store_url: str) -> None:
    settings = settings_for(store_url, status_token=TOKEN)
    c = client(settings)
    quarantine_one(settings.state_url)
    add_events(settings.state_url)
    text = c.get(f"/?token={TOKEN}").text
    assert "<b>&quot;cnpj_cpf&quot;</b>" not in text and "<script>x" not in text
    assert "&lt;b&gt;&#34;cnpj_cpf&#34;&lt;/b&gt; &amp; &lt;script&gt;" in text
    assert "sync of customers 42 failed: &lt;Omie&gt; SOAP-ENV:Client" in text
    assert "second line" not in text  # first line of an error only
    assert "the last verify found customers drifted" in text
    assert "run_failed:orders" not in text  # active alerts only
    assert re.search(r"pending <strong[^>]*>2</strong>", text)


def _cells(html: str, entity: str, side: str) -> dict[str, str]:
    row = re.search(rf'<tr data-entity="{entity}" data-side="{side}">(.*?)</tr>', html, re.DOTALL)
    assert row, f"no row for {entity} {side}"
    cells = dict(re.findall(r'<td class="(?:n )?([a-z-]+)[^"]*">(.*?)</td>', row.group(1),
                            re.DOTALL))
    return cells


@pytest.mark.timeout(600)
def test_the_page_shows_the_figures_of_ponte_status_json(cli_env: Env,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONTE_SERVE__STATUS_TOKEN", TOKEN)
    assert runner.invoke(cli_app, ["sync", "customers", "products"]).exit_code in (0, 1)
    status = json.loads(runner.invoke(cli_app, ["status", "--json"]).stdout)
    html = client(Settings()).get("/", headers={"Authorization": f"Bearer {TOKEN}"}).text
    shown = 0
    for e in status["entities"]:
        for s in e["sides"]:
            cells = _cells(html, e["entity"], s["side"])
            if s["watermark"]:
                assert f'datetime="{s["watermark"]}"' in cells["watermark"]
            if e["last_run"]:
                for kind in ("read", "created", "updated", "unchanged"):
                    assert cells[kind] == str(e["last_run"]["counts"][s["side"]][kind])
                shown += 1
            assert cells["in-quarantine"] == str(s["quarantined"])
    assert shown >= 3  # customers (both sides) and products (read from the ERP)
    assert any(e["last_run"]["counts"][side]["created"] for e in status["entities"]
               if e["last_run"] for side in ("crm", "erp"))  # figures worth comparing
    assert TOKEN not in html


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"), (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"),
    (3660, "1 h 1 min"), (86400, "1 d"), (90000, "1 d 1 h"), (-180, "in 3 min"),
])
def test_ages_read_like_people_say_them(seconds: float | None, text: str) -> None:
    from etl.serve.status_view import age

    assert age(seconds) == text


def test_runs_show_the_first_line_of_their_error_and_summed_counts(store_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from etl.state import Store

    settings = settings_for(store_url, status_token=TOKEN)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    with Store.open(store_url) as store:
        failed = store.start_run("sync", ["customers", "orders"], now=t0)
        store.finish_run(failed, "failed", {
            "error": "Omie answered 500 <SOAP-ENV:Server>\nTraceback: not for the page",
            "duration_s": 2.25, "entities": {
                "customers": {"crm": {"created": 2, "updated": 1, "quarantined": 1},
                              "erp": {"created": 3, "updated": 0, "quarantined": 0}},
                "orders": {"crm": {"created": 1}, "erp": {}}}}, now=t0 + timedelta(seconds=3))
        running = store.start_run("backfill", ["products"], now=t0 + timedelta(minutes=1))
    html = client(settings).get(f"/?token={TOKEN}").text
    row = re.search(rf'<tr data-run="{failed[:8]}">(.*?)</tr>', html, re.DOTALL)
    assert row, html
    cells = dict(re.findall(r'<td class="(?:n )?([a-z-]+)[^"]*">(.*?)</td>', row.group(1),
                            re.DOTALL))
    assert (cells["created"], cells["updated"], cells["quarantined"]) == ("6", "1", "1")
    assert cells["duration"] == "2.2 s"
    assert cells["error"] == "Omie answered 500 &lt;SOAP-ENV:Server&gt;"
    assert "Traceback" not in html
    assert re.search(rf'<tr data-run="{running[:8]}">.*?running</td>', html, re.DOTALL)
