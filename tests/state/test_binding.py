"""The state is bound to the systems it was built with (etl.binding), on SQLite and PostgreSQL:
stored on first use, only hashes of the account credentials, a mismatch named per side and
field without secrets, and a deliberate rebind recorded in the run history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from etl import binding
from etl.errors import ConfigError, StateBoundElsewhere
from etl.settings import CrmSettings, ErpSettings, Settings
from etl.state import BindingRow, Store

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
USER_KEY = "ploomes-user-key-7f3a9c"
APP_KEY = "4409711223310"
APP_SECRET = "omie-app-secret-d41e"


def settings(store_url: str, **change: str) -> Settings:
    crm: dict[str, Any] = {"base_url": "http://127.0.0.1:8701",
                           "credentials": {"user_key": SecretStr(USER_KEY)}}
    erp: dict[str, Any] = {"base_url": "http://127.0.0.1:8702/api/v1",
                           "credentials": {"app_key": SecretStr(APP_KEY),
                                           "app_secret": SecretStr(APP_SECRET)}}
    for name, value in change.items():
        side, field = name.split("__")
        target = crm if side == "crm" else erp
        if field in ("user_key", "app_key", "app_secret"):
            target["credentials"][field] = SecretStr(value)
        else:
            target[field] = value
    return Settings(state_url=store_url, crm=CrmSettings(**crm), erp=ErpSettings(**erp))


def table_text(store: Store, table: str) -> str:
    with store.engine.connect() as conn:
        return repr(conn.execute(sa.text(f"SELECT * FROM {table}")).all())


def test_store_keeps_a_first_binding_and_replaces_only_on_rebind(store: Store) -> None:
    first = BindingRow("crm", "ploomes", "http://a", "h1", "00", NOW)
    other = BindingRow("crm", "ploomes", "http://b", "h2", "11", NOW)
    assert store.bindings() == {}
    store.set_bindings([first], replace=False)
    store.set_bindings([other], replace=False)  # a concurrent first use loses
    assert store.bindings() == {"crm": first}
    store.set_bindings([other], replace=True)
    assert store.bindings() == {"crm": other}


def test_first_use_binds_both_sides_and_stores_no_secret(store: Store, store_url: str) -> None:
    s = settings(store_url)
    assert binding.ensure(store, s, bind=False, now=NOW).bound == {}  # a plan binds nothing
    assert store.bindings() == {}
    binding.ensure(store, s, bind=True, now=NOW)
    rows = store.bindings()
    assert {(r.side, r.kind, r.base_url) for r in rows.values()} == {
        ("crm", "ploomes", "http://127.0.0.1:8701"), ("erp", "omie", "http://127.0.0.1:8702/api/v1")}
    assert rows["crm"].salt != rows["erp"].salt
    text = table_text(store, "bindings")
    for secret in (USER_KEY, APP_KEY, APP_SECRET):
        assert secret not in text
    assert binding.ensure(store, s, bind=True, now=NOW).ok  # same systems: fine, unchanged
    assert store.bindings() == rows


# (what changes in the configuration, the message must contain, must not contain)
MISMATCHES: list[tuple[dict[str, str], list[str], list[str]]] = [
    ({"crm__base_url": "http://10.0.0.9:8701"},
     ["crm: base URL differs", "stored http://127.0.0.1:8701",
      "configured http://10.0.0.9:8701", "PONTE_CRM__BASE_URL"], ["erp:"]),
    ({"erp__base_url": "https://app.omie.com.br/api/v1/"},
     ["erp: base URL differs", "stored http://127.0.0.1:8702/api/v1",
      "configured https://app.omie.com.br/api/v1 "], ["crm:"]),
    ({"crm__user_key": "another-accounts-user-key"},
     ["crm: account differs", "PONTE_CRM__CREDENTIALS__USER_KEY"], ["erp:", "another-accounts-user-key"]),
    ({"erp__app_key": "5500000000001"},
     ["erp: account differs", "PONTE_ERP__CREDENTIALS__APP_KEY"], ["crm:", "5500000000001"]),
    ({"crm__base_url": "http://crm.other", "erp__app_key": "5500000000001"},
     ["crm: base URL differs", "erp: account differs"], ["5500000000001"]),
]


@pytest.mark.parametrize(("change", "expected", "absent"), MISMATCHES)
def test_other_systems_are_refused_with_what_differs(
    open_store: Callable[[], Store], store_url: str, change: dict[str, str],
    expected: list[str], absent: list[str],
) -> None:
    store = open_store()
    binding.ensure(store, settings(store_url), bind=True, now=NOW)
    before = store.bindings()
    for bind in (False, True):
        with pytest.raises(StateBoundElsewhere) as caught:
            binding.ensure(open_store(), settings(store_url, **change), bind=bind, now=NOW)
        message = str(caught.value)
        assert isinstance(caught.value, ConfigError)  # exit 2
        for text in [*expected, "PONTE_STATE_URL", "ponte db rebind", "nothing was read"]:
            assert text in message, (text, message)
        for text in [*absent, USER_KEY, APP_KEY, APP_SECRET]:
            assert text not in message, (text, message)
        assert before["crm"].account_hash not in message
    assert store.bindings() == before  # nothing rebound by a refused command


@pytest.mark.parametrize(("stored", "configured"), [
    ("http://127.0.0.1:8701", "http://127.0.0.1:8701/"),
    ("http://127.0.0.1:8701", "HTTP://127.0.0.1:8701"),
    ("https://api2.ploomes.com", "https://API2.Ploomes.com:443/"),
    ("http://127.0.0.1:8702/api/v1", "http://127.0.0.1:8702/api/v1/?x=1"),
])
def test_the_same_url_written_differently_is_the_same_system(
    store: Store, store_url: str, stored: str, configured: str,
) -> None:
    binding.ensure(store, settings(store_url, crm__base_url=stored), bind=True, now=NOW)
    assert binding.ensure(store, settings(store_url, crm__base_url=configured), bind=True,
                          now=NOW).ok


def test_a_new_app_secret_alone_is_the_same_account(store: Store, store_url: str) -> None:
    binding.ensure(store, settings(store_url), bind=True, now=NOW)
    assert binding.ensure(store, settings(store_url, erp__app_secret="rotated"), bind=True,
                          now=NOW).ok


def test_rebind_moves_the_state_deliberately_and_is_recorded(store: Store, store_url: str) -> None:
    binding.ensure(store, settings(store_url), bind=True, now=NOW)
    moved = settings(store_url, crm__base_url="https://api2.ploomes.com",
                     crm__user_key="new-user-key")
    plan = binding.rebind_plan(store, moved)
    assert any("crm: base URL differs" in line for line in plan)
    assert any("crm: account differs" in line for line in plan)
    result = binding.rebind(store, moved, now=NOW)
    assert binding.ensure(store, moved, bind=True, now=NOW).ok
    with pytest.raises(StateBoundElsewhere):
        binding.ensure(store, settings(store_url), bind=False, now=NOW)
    run = store.run(result.run_id)
    assert run is not None and run.kind == "rebind" and run.status == "ok"
    report: dict[str, Any] = run.report
    assert result.changes == [("crm: ploomes http://127.0.0.1:8701 -> ploomes "
                              "https://api2.ploomes.com (new account credential)")]
    assert report["summary"] == result.changes[0]
    assert report["bound"]["crm"] == "ploomes https://api2.ploomes.com"
    assert "new-user-key" not in repr(report) + table_text(store, "bindings")
    with pytest.raises(ConfigError, match="already bound"):
        binding.rebind(store, moved, now=NOW)


def test_status_view_shows_kinds_and_urls_only(store: Store, store_url: str) -> None:
    binding.ensure(store, settings(store_url), bind=True, now=NOW)
    view = binding.compare(store, settings(store_url, crm__user_key="x-other")).as_dict()
    assert view["matches"] is False and view["bound"]["crm"]["base_url"] == "http://127.0.0.1:8701"
    assert view["differences"] == [
        ("crm: account differs — PONTE_CRM__CREDENTIALS__USER_KEY is not the credential this state was built "
        "with (another account, or a new key)")]
    assert "account_hash" not in repr(view) and "salt" not in repr(view)
