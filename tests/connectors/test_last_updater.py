"""Ponte's own last changes left out of a listing (``list.last_updater``), against the Ploomes
simulator: its records say who changed them last (``UpdaterId``), ``/Self`` says which user the
User-Key is. Server-side with the spec's ``exclude`` clause, client-side without it; a listing
not asked to (``Window.skip_own`` unset) lists everything as before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from etl.connectors.base import Window, WriteOp
from etl.connectors.generic import GenericConnector
from etl.connectors.registry import get
from etl.connectors.spec import ConnectorSpec, parse_spec
from etl.errors import ConfigError
from etl.sandbox.ploomes import PloomesSim
from etl.sandbox.ploomes.schema import INTEGRATION_USER_ID, PERSON_USER_ID
from tests.connectors.conftest import PLOOMES_TEST_KEY

Make = Callable[..., GenericConnector]
T0 = datetime(2024, 3, 1, 15, 0, 0, tzinfo=UTC)


def listed(conn: GenericConnector, window: Window) -> list[str]:
    return [r["Name"] for page in conn.list_changed("customers", window) for r in page]


def contact_reads(sim: PloomesSim) -> int:
    return sum(n for (endpoint, _s), n in sim.requests.counts.items()
               if endpoint == "GET /Contacts")


def written_and_edited(sim: PloomesSim, conn: GenericConnector) -> None:
    """Five contacts written through the API (ponte), one of them then edited by a person,
    and one contact a person made."""
    ops = [WriteOp("create", {"Name": f"API {i}", "TypeId": 1}) for i in range(5)]
    results = conn.write_batch("customers", ops)
    assert all(r.ok for r in results), results
    sim.ui_update("Contacts", int(results[2].key or 0), {"Name": "API 2 edited"})
    sim.ui_create("Contacts", {"Name": "Person", "TypeId": 1})


def test_the_simulator_records_who_changed_a_record_last(ploomes_sim: PloomesSim,
                                                         ploomes_connector: Make) -> None:
    conn = ploomes_connector()
    written_and_edited(ploomes_sim, conn)
    records = {r["Name"]: r for page in conn.list_changed("customers", Window(None))
               for r in page}
    assert records["API 0"]["UpdaterId"] == records["API 0"]["CreatorId"] == INTEGRATION_USER_ID
    assert records["API 2 edited"]["UpdaterId"] == PERSON_USER_ID
    assert records["API 2 edited"]["CreatorId"] == INTEGRATION_USER_ID
    assert records["Person"]["UpdaterId"] == PERSON_USER_ID
    # a write through the API cannot claim to be someone else
    ops = [WriteOp("update", {"Name": "Person", "UpdaterId": 1}, str(records["Person"]["Id"]))]
    assert conn.write_batch("customers", ops)[0].ok
    again = conn.read_by_keys("customers", [str(records["Person"]["Id"])])
    assert again[0]["UpdaterId"] == INTEGRATION_USER_ID


def test_server_side_the_listing_leaves_out_ponte_own_last_changes(
        ploomes_sim: PloomesSim, ploomes_connector: Make) -> None:
    conn = ploomes_connector()
    written_and_edited(ploomes_sim, conn)
    everything = listed(conn, Window(T0))
    assert sorted(everything) == ["API 0", "API 1", "API 2 edited", "API 3", "API 4", "Person"]
    before = contact_reads(ploomes_sim)
    assert sorted(listed(conn, Window(T0, skip_own=True))) == ["API 2 edited", "Person"]
    # filtered by the server: one short page, and the empty page that confirms the end
    assert contact_reads(ploomes_sim) == before + 2
    # a later person's edit of a record ponte wrote is listed again
    api0 = next(r.id for r in ploomes_sim.db["Contacts"] if r.data["Name"] == "API 0")
    ploomes_sim.ui_update("Contacts", api0, {"Note": "called"})
    assert sorted(listed(conn, Window(T0, skip_own=True))) == ["API 0", "API 2 edited",
                                                              "Person"]
    # who ponte is is asked once per connector
    assert ploomes_sim.requests.counts[("GET /Self", 200)] == 1


def without_exclude(spec: ConnectorSpec) -> ConnectorSpec:
    raw = spec.model_dump(by_alias=True, exclude_none=True)
    raw["entities"]["customers"]["list"]["last_updater"].pop("exclude")
    return parse_spec(raw, "test")


def test_client_side_without_an_exclude_clause(ploomes_sim: PloomesSim,
                                               ploomes_http: TestClient,
                                               ploomes_connector: Make) -> None:
    written_and_edited(ploomes_sim, ploomes_connector())
    conn = GenericConnector(without_exclude(get("ploomes").spec), ploomes_http, system="crm",
                            credentials={"user_key": PLOOMES_TEST_KEY},
                            requests_per_minute=100_000)
    assert sorted(listed(conn, Window(T0, skip_own=True))) == ["API 2 edited", "Person"]
    assert len(listed(conn, Window(T0))) == 6


def test_a_system_that_cannot_say_who_ponte_is_lists_everything(
        ploomes_sim: PloomesSim, ploomes_http: TestClient, ploomes_connector: Make) -> None:
    written_and_edited(ploomes_sim, ploomes_connector())
    raw = get("ploomes").spec.model_dump(by_alias=True, exclude_none=True)
    raw["entities"]["customers"]["list"]["last_updater"]["me"]["path"] = "/NoSuchThing"
    conn = GenericConnector(parse_spec(raw, "test"), ploomes_http, system="crm",
                            credentials={"user_key": PLOOMES_TEST_KEY},
                            requests_per_minute=100_000)
    assert len(listed(conn, Window(T0, skip_own=True))) == 6


def test_an_exclude_clause_needs_a_filter() -> None:
    raw = get("ploomes").spec.model_dump(by_alias=True, exclude_none=True)
    del raw["entities"]["customers"]["list"]["filter"]
    with pytest.raises(ConfigError, match="last_updater.exclude"):
        parse_spec(raw, "test.yaml")
