"""The status page in a real headless Chromium (Debian's, driven by Playwright): after a sync of
the sandbox, a quarantined record, a verify with drift and some webhook events, the page shows
the state's figures, renders vendor text as text, and refuses a wrong token.

Skipped when Chromium or Playwright is missing (``make browser`` installs Chromium); with
PONTE_TEST_REQUIRE_BROWSER=1 (``.ci/run`` sets it) that is a failure instead. With
PONTE_TEST_SCREENSHOT=1 the page is saved to tests/serve/status_page.png (the README shows it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from etl.cli import app as cli_app
from etl.settings import Settings
from etl.state import Store
from tests.serve.conftest import REASON, TOKEN, Env, add_events, quarantine_one

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking switches Chromium keeps trying to reach its services and,
# on a closed network, has its connections refused many at a time
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parent / "status_page.png"

runner = CliRunner()


def missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (it is in the dev extra: make setup)"
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (make browser installs Debian's)"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium with a fresh profile (a Playwright ``BrowserContext``)."""
    reason = missing_browser()
    if reason:
        if os.environ.get("PONTE_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"PONTE_TEST_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(f"browser tests: {reason}; run `make browser`, and set "
                    "PONTE_TEST_REQUIRE_BROWSER=1 to make this skip a failure")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="ponte-chromium-") as prof:
        context = p.chromium.launch_persistent_context(
            prof, executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


def ponte(*args: str) -> Any:
    return runner.invoke(cli_app, list(args), catch_exceptions=False)


def drift_one_customer(env: Env) -> None:
    """Change a synced customer's e-mail in the CRM with a back-dated modification time: no
    sync reads it, the next verify reports it as drift."""
    crm = env.sandbox.crm
    contact = next(r for r in crm.db["Contacts"] if r.data.get("Register"))
    crm.clock.advance(-3600)
    crm.ui_update("Contacts", contact.id, {"Email": "drift@exemplo.com.br"})
    crm.clock.advance(3600)


def realistic_state(env: Env) -> dict[str, Any]:
    """Sync everything, drift one customer and verify, quarantine a record, add webhook
    events and alerts; returns ``ponte status --json``."""
    assert ponte("sync").exit_code in (0, 1)
    drift_one_customer(env)
    assert ponte("verify", "customers").exit_code == 1  # drift remains
    quarantine_one(env.state_url)
    add_events(env.state_url)
    result = ponte("status", "--json")
    assert result.exit_code == 0, result.output
    status: dict[str, Any] = json.loads(result.stdout)
    return status


@pytest.mark.timeout(600)
def test_status_page_in_chromium(cli_env: Env, monkeypatch: pytest.MonkeyPatch,
                                 status_served: Callable[[Settings], str], chromium: Any) -> None:
    monkeypatch.setenv("PONTE_SERVE__STATUS_TOKEN", TOKEN)
    # relative to the test's own working directory: the screenshot shows no machine's path
    monkeypatch.setenv("PONTE_STATE_URL", "sqlite:///ponte.db")
    cli_env.state_url = "sqlite:///ponte.db"
    status = realistic_state(cli_env)
    url = status_served(Settings())
    page = chromium.new_page()

    refused = page.goto(f"{url}/?token=not-the-token")
    assert refused is not None and refused.status == 401
    body = page.inner_text("body")
    assert "customers" not in body and "authentication required" in body

    response = page.goto(f"{url}/?token={TOKEN}")
    assert response is not None and response.status == 200
    body = page.inner_text("body")
    for name in ("customers", "products", "orders", "Last runs", "Quarantine (1)",
                 "Last verify", "Webhook events"):
        assert name in body, name

    # per entity and side: the figures of `ponte status --json`
    for e in status["entities"]:
        for s in e["sides"]:
            row = page.locator(f'tr[data-entity="{e["entity"]}"][data-side="{s["side"]}"]')
            if s["watermark"]:
                assert row.locator("td.watermark time").get_attribute("datetime") == \
                    s["watermark"]
            if e["last_run"]:
                for kind in ("read", "created", "updated", "unchanged"):
                    assert row.locator(f"td.{kind}").inner_text() == \
                        str(e["last_run"]["counts"][s["side"]][kind]), (e["entity"], kind)
            assert row.locator("td.in-quarantine").inner_text() == str(s["quarantined"])

    # the runs table against the run history in the state
    with Store.open(cli_env.state_url) as store:
        runs = store.runs(limit=20)
    sync = next(r for r in runs if r.kind == "sync")
    created = sum(c[side]["created"] for c in sync.report["entities"].values()
                  for side in ("crm", "erp"))
    assert created > 0
    assert page.locator(f'tr[data-run="{sync.id[:8]}"] td.created').inner_text() == str(created)
    verify = next(r for r in runs if r.kind == "verify")
    drift = verify.report["entities"]["customers"]["drift"]
    assert drift >= 1
    assert page.locator('#verify tr[data-entity="customers"] td.drift').inner_text() == \
        str(drift)

    # vendor text is text: no element comes out of it
    reason = page.locator("#quarantine td.reason").inner_text()
    assert reason == f"cnpj_cpf: {REASON}"
    assert page.locator("#quarantine td.reason b").count() == 0
    assert page.locator("script").count() == 0
    assert "pending 2, failed 1" in page.inner_text("#backlog")
    assert "drift:customers" in page.inner_text("#alerts")
    assert TOKEN not in page.content()

    if os.environ.get("PONTE_TEST_SCREENSHOT"):
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    # readable on a phone: the page itself never scrolls sideways (wide tables scroll inside)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
