"""Connector specs: validation messages, the registry's sources, settings built from a spec,
auth, and ``ponte connectors list/check``."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from etl.cli import app
from etl.connectors import registry
from etl.connectors.auth import Authenticator, Call
from etl.connectors.factory import build_connectors, implementation
from etl.connectors.generic import GenericConnector
from etl.connectors.spec import OAuth2Auth, parse_spec
from etl.errors import ConfigError, SystemUnavailable
from etl.exitcodes import Exit
from etl.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "connectors" / "minicrm.yaml"


def example(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for path, value in changes.items():
        node = raw
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return raw


@pytest.mark.parametrize(("changes", "message"), [
    ({"kind": "crmm"}, "spec.yaml: kind: Input should be 'crm', 'erp' or 'any'; got 'crmm'"),
    ({"auth": {"type": "cookie"}},
     ("spec.yaml: auth.type: unknown 'type' 'cookie' (valid: 'none', 'header', 'query', 'body', "
     "'bearer', 'basic', 'oauth2')")),
    ({"entities__customers__list__paginator": {"type": "pages"}},
     ("spec.yaml: entities.customers.list.paginator.type: unknown 'type' 'pages' (valid: "
     "'offset', 'page_number', 'keyset', 'cursor', 'next_link', 'range', 'none')")),
    ({"entities__customers__list__method": "FETCH"},
     ("spec.yaml: entities.customers.list.method: Input should be 'GET', 'POST', 'PUT', "
     "'PATCH' or 'DELETE'; got 'FETCH'")),
    ({"auth": {"type": "header", "name": "X-Key", "credential": "token"}},
     "auth.credential: 'token' is not a declared credential (valid: api_key)"),
    ({"entities__customers__depends_on": ["accounts"]},
     "entities.customers.depends_on: 'accounts' is not an entity (valid: customers)"),
    ({"errors": [{"status": [422], "action": "explode"}]},
     ("spec.yaml: errors[0].action: Input should be 'ok', 'retry', 'end_of_list', 'not_found', "
     "'already_exists', 'rejected', 'bad_credentials', 'unavailable' or 'bad_request'; got "
     "'explode'")),
    ({"errors": [{"status": ["6xx"], "action": "retry"}]}, "status '6xx': a code or 1xx..5xx"),
    ({"entities__customers__listing": {"path": "/x"}},
     "spec.yaml: entities.customers.listing: unknown key"),
    ({"entities__customers__key": None},
     "entities.customers.key: required (the generic connector runs this spec)"),
    ({"entities__customers__deactivate": {"method": "GET", "path": "/customers/{key}"}},
     ("spec.yaml: (top level): entities.customers.deactivate.method: 'GET' changes nothing "
      "(valid: POST, PUT, PATCH, DELETE)")),
    ({"entities__customers__deactivate": {"path": "/x", "active": False}},
     "spec.yaml: entities.customers.deactivate.active: unknown key"),
    ({"entities__customers__list__records": ["data", "closed.data"]},
     ("spec.yaml: entities.customers.list: records: several lists page only together by one "
      "offset (valid paginators: offset, none); got 'page_number'")),
    ({"entities__customers__list__records": []},
     "spec.yaml: entities.customers.list: records: an empty list names no path"),
    ({"entities__customers__read_by_keys__records": ["data", "data"]},
     "spec.yaml: entities.customers.read_by_keys: records: a path is listed twice"),
    ({"entities__customers__list__paginator": {"type": "offset", "total_path": ["n", ""]}},
     ("spec.yaml: entities.customers.list.paginator: total_path: each path of the list must "
      "name a field")),
], ids=["kind", "auth-type", "paginator", "method", "credential", "depends-on", "action",
        "status", "unknown-key", "generic-needs-key", "deactivate-get", "deactivate-key",
        "records-lists-paging", "records-empty", "records-twice", "total-path-empty"])
def test_a_bad_spec_names_file_path_value_and_choices(changes: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(example(**changes), "spec.yaml")
    assert message in str(info.value)


def test_entity_order_follows_depends_on_and_a_cycle_is_an_error() -> None:
    from etl.connectors.spec import entity_order

    omie = registry.get("omie").spec
    assert entity_order(omie.entities) == ["customers", "products", "orders"]
    raw = example()
    raw["entities"]["leads"] = {**raw["entities"]["customers"], "depends_on": ["customers"]}
    raw["entities"]["customers"]["depends_on"] = ["leads"]
    with pytest.raises(ConfigError, match="cycle: customers -> leads -> customers"):
        parse_spec(raw, "spec.yaml")


def test_registry_sources_and_an_own_folder_overrides(tmp_path: Path) -> None:
    names = {r.spec.name: r.source for r in registry.built_in()}
    assert names == {"ploomes": "built-in", "omie": "built-in", "tryton": "built-in",
                     "bottlecrm": "built-in"}
    (tmp_path / "minicrm.yaml").write_text(EXAMPLE.read_text())
    found = registry.available(tmp_path)
    assert found["minicrm"].source == "dir" and found["ploomes"].source == "built-in"
    with pytest.raises(ConfigError, match=r"PONTE_ERP__KIND='minicrm': MiniCRM is a connector "
                                          r"for the crm side, not the erp \(valid: omie, tryton\)"):
        registry.get("minicrm", tmp_path, setting="PONTE_ERP__KIND", side="erp")
    with pytest.raises(ConfigError, match="PONTE_CONNECTORS_DIR='/nowhere': not a folder"):
        registry.available(Path("/nowhere"))


def test_settings_and_connectors_from_an_own_spec(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "minicrm.yaml").write_text(EXAMPLE.read_text())
    monkeypatch.setenv("PONTE_CONNECTORS_DIR", str(tmp_path / "specs"))
    monkeypatch.setenv("PONTE_CRM__KIND", "minicrm")
    monkeypatch.setenv("PONTE_CRM__BASE_URL", "http://127.0.0.1:9/api")
    with pytest.raises(ConfigError, match="PONTE_CRM__CREDENTIALS__API_KEY: required by "
                                          "MiniCRM"):
        Settings()
    monkeypatch.setenv("PONTE_CRM__CREDENTIALS__API_KEY", "k-123-secret")
    monkeypatch.setenv("PONTE_CRM__CREDENTIALS__API_KEYY", "k-123-secret")
    with pytest.raises(ConfigError) as info:
        Settings()
    assert ("PONTE_CRM__CREDENTIALS__API_KEYY=***: unknown setting; did you mean "
            "PONTE_CRM__CREDENTIALS__API_KEY?") in str(info.value)
    assert "k-123-secret" not in str(info.value)
    monkeypatch.delenv("PONTE_CRM__CREDENTIALS__API_KEYY")
    settings = Settings()
    assert settings.crm.requests_per_minute == 300 and settings.crm.page_size == 50
    assert "k-123-secret" in settings.secrets()
    conns = build_connectors(settings)
    assert isinstance(conns["crm"], GenericConnector) and conns["crm"].kind == "minicrm"


def test_connectors_list_and_check_commands(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PONTE_CONNECTORS_DIR", str(EXAMPLE.parent))
    runner = CliRunner()
    listed = runner.invoke(app, ["connectors", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["minicrm"]["source"] == "dir" and rows["minicrm"]["kind"] == "crm"
    assert rows["omie"]["collections"] == ["clientes", "produtos", "pedidos"]
    ok = runner.invoke(app, ["connectors", "check", str(EXAMPLE)])
    assert ok.exit_code == 0 and "ok — MiniCRM (crm)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(example(auth={"type": "cookie"})))
    refused = runner.invoke(app, ["connectors", "check", str(bad)])
    assert refused.exit_code == Exit.CONFIG
    assert f"{bad}: auth.type: unknown 'type' 'cookie' (valid: 'none'" in refused.stderr


def _recorder(answers: list[httpx.Response]) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0) if answers else httpx.Response(200, json={"data": []})
    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://x.test"), seen


@pytest.mark.parametrize(("auth", "check"), [
    ({"type": "header", "name": "X-Key", "credential": "a"},
     lambda c: c.headers["X-Key"] == "s1"),
    ({"type": "query", "name": "token", "credential": "a"}, lambda c: c.params["token"] == "s1"),
    ({"type": "body", "fields": {"app_key": "a", "app_secret": "b"}},
     lambda c: c.body == {"call": "X", "app_key": "s1", "app_secret": "s2"}),
    ({"type": "bearer", "credential": "a"},
     lambda c: c.headers["Authorization"] == "Bearer s1"),
    ({"type": "basic", "username": "a", "password": "b"},
     lambda c: c.headers["Authorization"] == "Basic " + base64.b64encode(b"s1:s2").decode()),
], ids=["header", "query", "body", "bearer", "basic"])
def test_auth_kinds(auth: dict[str, Any], check: Any) -> None:
    spec = parse_spec(example(auth=auth, credentials={"a": {}, "b": {}}), "s.yaml")
    call = Call("POST", "/x", body={"call": "X"})
    Authenticator(spec.auth, {"a": "s1", "b": "s2"}, system="crm").apply(call)
    assert check(call)


def test_oauth2_token_is_cached_refreshed_before_expiry_and_refusal_is_unavailable() -> None:
    auth = OAuth2Auth(type="oauth2", token_url="/oauth/token", client_id="id",
                      client_secret="secret", refresh_before_s=60)
    client, seen = _recorder([httpx.Response(200, json={"access_token": "t1", "expires_in": 300}),
                              httpx.Response(200, json={"access_token": "t2", "expires_in": 300}),
                              httpx.Response(401, json={"error": "invalid_client"})])
    now = [0.0]
    a = Authenticator(auth, {"id": "cid", "secret": "cs-very-secret"}, system="crm",
                      client=client, clock=lambda: now[0])
    assert a.token() == "t1" and a.token() == "t1" and a.token_requests == 1
    now[0] = 241.0  # 59 s before expiry: refreshed
    assert a.token() == "t2" and a.token_requests == 2
    assert b"grant_type=client_credentials" in seen[0].content
    a.forget_token()
    with pytest.raises(SystemUnavailable) as info:
        a.token()
    assert "refused the credentials (HTTP 401)" in str(info.value)
    assert "cs-very-secret" not in str(info.value)


def test_a_package_adds_specs_through_the_entry_point_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution (a dist-info on the path) whose entry point in group
    ``ponte.connectors`` names a folder of specs."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "minicrm.yaml").write_text(EXAMPLE.read_text())
    (tmp_path / "ponte_minicrm.py").write_text(f"SPECS = {str(specs)!r}\n")
    info = tmp_path / "ponte_minicrm-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ponte-minicrm\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ponte.connectors]\nminicrm = ponte_minicrm:SPECS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = registry.available()
    assert found["minicrm"].source == "package"
    assert found["minicrm"].origin == f"ponte_minicrm:SPECS ({specs})"
    (tmp_path / "ponte_minicrm.py").write_text("SPECS = '/nowhere/specs'\n")
    monkeypatch.delitem(sys.modules, "ponte_minicrm", raising=False)
    with pytest.raises(ConfigError, match="entry point 'minicrm' .* /nowhere/specs does not "
                                          "exist"):
        registry.available()


def test_every_built_in_spec_runs_on_the_generic_connector() -> None:
    assert [r.spec.name for r in registry.built_in() if r.spec.implementation] == []
    assert implementation(registry.get("omie").spec) is GenericConnector


def test_a_session_sends_each_request_to_the_url_of_its_own_params() -> None:
    """The session keeps the URLs it built: a kept one is never sent with other params, and
    what is sent is what httpx itself makes of the path and params."""
    from etl.connectors.http import TARGETS_KEPT, HttpSession

    client, seen = _recorder([])
    session = HttpSession(client, system="crm", requests_per_minute=10**6)
    asked = [("Contacts", {"$expand": "City,Tags", "$filter": "Name eq 'A b'"}),
             ("Contacts", {"$expand": "City,Tags", "$filter": "Name eq 'C&d'"}),
             ("Contacts", {"$expand": "City,Tags", "$filter": "Name eq 'A b'"}),
             ("Contacts(7)", None), ("Contacts", {"ids": ["1", "2"]}), ("Contacts", None)]
    for _ in range(2):
        for path, params in asked:
            session.request("GET", path, kind="read", classify=lambda r: ("ok", None),
                            params=params)
    expected = [client.build_request("GET", path, params=params).url for path, params in asked]
    assert [r.url for r in seen] == expected * 2
    assert str(seen[1].url).endswith("%24filter=Name+eq+%27C%26d%27")
    for n in range(TARGETS_KEPT + 5):  # a listing paging through many: the kept ones start over
        session.request("GET", "Contacts", kind="read", classify=lambda r: ("ok", None),
                        params={"$skip": str(n)})
    assert str(seen[-1].url) == f"http://x.test/Contacts?%24skip={TARGETS_KEPT + 4}"
    assert len(session._targets) <= TARGETS_KEPT
