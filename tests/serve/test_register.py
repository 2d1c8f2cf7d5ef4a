"""``ponte webhooks register`` and ``status``: against the Ploomes simulator's ``/Webhooks``
(POST, GET, PATCH, ``/Webhooks@Actions``, behind the User-Key header) for what it does, and a
small stand-in of that API only for what the simulator cannot show: an account whose action ids
differ from the spec's, and a ``/Webhooks@Actions`` that does not answer. (The deliveries of the
callbacks registered here into ``ponte serve``: test_webhooks_e2e.py.)"""

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
from tests.engine.conftest import MAPPINGS, World, make_world

# the account's action ids differ from the ones the spec assumes for Delete: the list wins
ACTIONS = [{"Id": 1, "Name": "Create"}, {"Id": 2, "Name": "Update"}, {"Id": 6, "Name": "Delete"}]
PUBLIC = "https://ponte.example.com"


class FakeWebhooks:
    def __init__(self, *, actions_answer: bool = True) -> None:
        self.hooks: list[dict[str, Any]] = []
        self.writes = 0
        self.actions_answer = actions_answer

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
            if not self.actions_answer:
                return JSONResponse({"error": {"message": "not found"}}, status_code=404)
            return JSONResponse({"value": ACTIONS})

        return Starlette(routes=[Route("/Webhooks@Actions", actions),
                                 Route("/Webhooks", hooks, methods=["GET", "POST"]),
                                 Route("/Webhooks{rest}", one, methods=["PATCH"])])


def fake_ponte(tmp_path: Path, fake: FakeWebhooks) -> Ponte:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}")
    world.settings.crm.webhook_key = SecretStr("hook-key-1")
    world.settings.serve.public_url = PUBLIC + "/"
    client = TestClient(fake.app(), base_url="http://ploomes.test")
    _crm, erp = world.clients()
    return Ponte(world.settings, clock=world, crm_client=client, erp_client=erp)


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Ponte, FakeWebhooks]:
    api = FakeWebhooks()
    return fake_ponte(tmp_path, api), api


@pytest.fixture
def sim(tmp_path: Path) -> tuple[Ponte, World]:
    """The façade on the simulators, the CRM's webhook key and ponte's public address set."""
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}")
    world.settings.crm.webhook_key = SecretStr("hook-key-1")
    world.settings.serve.public_url = PUBLIC + "/"
    return world.ponte(), world


def hooks_of(world: World) -> list[dict[str, Any]]:
    return [{"Id": h.id, **h.data} for h in world.crm.db["Webhooks"]]


def test_register_creates_each_callback_once_then_changes_nothing(
        sim: tuple[Ponte, World]) -> None:
    ponte, world = sim
    first = ponte.webhooks_register()
    assert first.changed == 9  # Contacts, Orders, Products x Create, Update, Delete
    hooks = hooks_of(world)
    assert {h["CallbackUrl"] for h in hooks} == {
        f"{PUBLIC}/webhooks/ploomes?collection={c}" for c in ("Contacts", "Orders", "Products")}
    contacts = sorted((h["EntityId"], h["ActionId"]) for h in hooks
                      if h["CallbackUrl"].endswith("Contacts"))
    assert contacts == [(1, 1), (1, 2), (1, 3)]
    assert all(h["ValidationKey"] == "hook-key-1" and h["Active"] for h in hooks)
    writes = world.write_requests()
    second = ponte.webhooks_register()
    assert second.changed == 0 and {c.state for c in second.callbacks} == {"unchanged"}
    assert world.write_requests() == writes and len(hooks_of(world)) == 9
    assert "hook-key-1" not in str(second.as_dict())
    # the ERP has no registration API: what to set in its portal
    (manual,) = first.manual
    assert manual.url == f"{PUBLIC}/webhooks/omie"
    assert "ClienteFornecedor.Alterado" in manual.topics and "VendaProduto.Excluida" in \
        manual.topics


def test_the_account_action_ids_win_over_the_spec(fake: tuple[Ponte, FakeWebhooks]) -> None:
    ponte, api = fake
    assert ponte.webhooks_register().changed == 9
    contacts = sorted((h["EntityId"], h["ActionId"]) for h in api.hooks
                      if h["CallbackUrl"].endswith("Contacts"))
    assert contacts == [(1, 1), (1, 2), (1, 6)]  # Delete's id read from /Webhooks@Actions


def test_without_an_actions_list_the_spec_ids_are_used(tmp_path: Path) -> None:
    api = FakeWebhooks(actions_answer=False)
    assert fake_ponte(tmp_path, api).webhooks_register().changed == 9
    assert sorted({h["ActionId"] for h in api.hooks}) == [1, 2, 3]


def test_a_new_key_updates_the_callbacks(sim: tuple[Ponte, World]) -> None:
    ponte, world = sim
    ponte.webhooks_register()
    ponte.settings.crm.webhook_key = SecretStr("hook-key-2")
    again = ponte.webhooks_register()
    assert {c.state for c in again.callbacks} == {"updated"} and len(hooks_of(world)) == 9
    assert all(h["ValidationKey"] == "hook-key-2" for h in hooks_of(world))


def test_status_lists_ponte_callbacks_and_event_counts(sim: tuple[Ponte, World]) -> None:
    ponte, world = sim
    crm, _erp = world.clients()
    other = crm.post("/Webhooks", json={"EntityId": 2, "ActionId": 4, "ValidationKey": "x",
                                        "CallbackUrl": "https://someone.else/hook"},
                     headers={"User-Key": SANDBOX_USER_KEY})
    assert other.status_code == 200, other.text
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
