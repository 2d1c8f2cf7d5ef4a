"""``ponte webhooks register`` and ``status`` against a small stand-in for Ploomes' webhook API
(the Ploomes simulator has no ``/Webhooks`` yet): the reference's shape — POST /Webhooks
{EntityId, ActionId, CallbackUrl, ValidationKey}, GET /Webhooks, PATCH /Webhooks(id),
GET /Webhooks@Actions — behind the User-Key header."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from etl.cli import app as cli
from etl.errors import ConfigError
from etl.exitcodes import Exit
from etl.ponte import Ponte
from etl.sandbox.keys import SANDBOX_USER_KEY
from tests.engine.conftest import MAPPINGS, make_world

# the account's action ids differ from the ones the spec assumes for Delete: the list wins
ACTIONS = [{"Id": 1, "Name": "Create"}, {"Id": 2, "Name": "Update"}, {"Id": 6, "Name": "Delete"}]


class FakeWebhooks:
    def __init__(self) -> None:
        self.hooks: list[dict[str, Any]] = []
        self.writes = 0

    def app(self) -> Starlette:
        async def hooks(request: Request) -> JSONResponse:
            if request.headers.get("User-Key") != SANDBOX_USER_KEY:
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            if request.method == "POST":
                body = await request.json()
                self.writes += 1
                hook = {"Id": len(self.hooks) + 1, "Active": True, **body}
                self.hooks.append(hook)
                return JSONResponse(hook)
            return JSONResponse({"value": self.hooks})

        async def one(request: Request) -> JSONResponse:
            ident = int(re.sub(r"\D", "", request.path_params["rest"]))
            hook = next(h for h in self.hooks if h["Id"] == ident)
            hook.update(await request.json())
            self.writes += 1
            return JSONResponse(hook)

        async def actions(request: Request) -> JSONResponse:
            return JSONResponse({"value": ACTIONS})

        return Starlette(routes=[Route("/Webhooks@Actions", actions),
                                 Route("/Webhooks", hooks, methods=["GET", "POST"]),
                                 Route("/Webhooks{rest}", one, methods=["PATCH"])])


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Ponte, FakeWebhooks]:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}")
    world.settings.crm.webhook_key = SecretStr("hook-key-1")
    world.settings.serve.public_url = "https://ponte.example.com/"
    fake = FakeWebhooks()
    client = TestClient(fake.app(), base_url="http://ploomes.test")
    _crm, erp = world.clients()
    return Ponte(world.settings, clock=world, crm_client=client, erp_client=erp), fake


def test_register_creates_each_callback_once_then_changes_nothing(
        fake: tuple[Ponte, FakeWebhooks]) -> None:
    ponte, api = fake
    first = ponte.webhooks_register()
    assert first.changed == 9  # Contacts, Orders, Products x Create, Update, Delete
    assert {h["CallbackUrl"] for h in api.hooks} == {
        f"https://ponte.example.com/webhooks/ploomes?collection={c}"
        for c in ("Contacts", "Orders", "Products")}
    contacts = sorted((h["EntityId"], h["ActionId"]) for h in api.hooks
                      if h["CallbackUrl"].endswith("Contacts"))
    assert contacts == [(1, 1), (1, 2), (1, 6)]  # Delete's id read from /Webhooks@Actions
    assert all(h["ValidationKey"] == "hook-key-1" for h in api.hooks)
    writes = api.writes
    second = ponte.webhooks_register()
    assert second.changed == 0 and {c.state for c in second.callbacks} == {"unchanged"}
    assert api.writes == writes
    assert "hook-key-1" not in str(second.as_dict())
    # the ERP has no registration API: what to set in its portal
    (manual,) = first.manual
    assert manual.url == "https://ponte.example.com/webhooks/omie"
    assert "ClienteFornecedor.Alterado" in manual.topics and "VendaProduto.Excluida" in \
        manual.topics


def test_a_new_key_updates_the_callbacks(fake: tuple[Ponte, FakeWebhooks]) -> None:
    ponte, api = fake
    ponte.webhooks_register()
    ponte.settings.crm.webhook_key = SecretStr("hook-key-2")
    again = ponte.webhooks_register()
    assert {c.state for c in again.callbacks} == {"updated"} and len(api.hooks) == 9
    assert all(h["ValidationKey"] == "hook-key-2" for h in api.hooks)


def test_status_lists_ponte_callbacks_and_event_counts(fake: tuple[Ponte, FakeWebhooks]
                                                       ) -> None:
    ponte, api = fake
    api.hooks.append({"Id": 99, "EntityId": 2, "ActionId": 4, "CallbackUrl":
                      "https://someone.else/hook", "ValidationKey": "x"})
    ponte.webhooks_register()
    report = ponte.webhooks_status()
    assert len(report.callbacks) == 9  # not the other integration's callback
    assert {(c.collection, c.action) for c in report.callbacks} >= {("Contacts", "Delete")}
    assert report.events == {"pending": 0, "done": 0, "ignored": 0, "failed": 0}


def test_register_without_a_public_url_or_key_names_the_setting(
        fake: tuple[Ponte, FakeWebhooks]) -> None:
    ponte, _api = fake
    ponte.settings.crm.webhook_key = None
    with pytest.raises(ConfigError, match="PONTE_CRM__WEBHOOK_KEY"):
        ponte.webhooks_register()
    ponte.settings.serve.public_url = ""
    with pytest.raises(ConfigError, match="PONTE_SERVE__PUBLIC_URL"):
        ponte.webhooks_register()


def test_cli_register_without_public_url_exits_2(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PONTE_MAPPINGS_DIR", str(MAPPINGS))
    monkeypatch.setenv("PONTE_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.delenv("PONTE_SERVE__PUBLIC_URL", raising=False)
    result = CliRunner().invoke(cli, ["webhooks", "register", "--json"])
    assert result.exit_code == Exit.CONFIG, result.output
    assert "PONTE_SERVE__PUBLIC_URL" in result.output
