"""The simulators' indexes and cached orders answer exactly what a scan of every record answers.

Ploomes: a ``$filter`` served through HTTP (where ``eq``/``in`` on stored fields narrow the
records through an index) is compared with the filter evaluated on every contact in id order,
over random records, random filters and random edits after the index was built. Omie: a lookup
by integration code is compared with a scan of the table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from etl.sandbox.odata import FilterError, parse_filter
from etl.sandbox.omie import OmieSim
from etl.sandbox.omie.records import CLIENTES
from etl.sandbox.ploomes import PloomesSim, create_app
from etl.sandbox.ploomes.listing import _View
from etl.sandbox.tables import Row

T0 = datetime(2024, 3, 1, 15, 0, tzinfo=UTC)
KEY = "test-index-key"
# UpdaterId: read as a person's where none is stored (its index keys that default)
FIELDS = ["Register", "CNPJ", "CPF", "Key", "TypeId", "UpdaterId"]
# stored values: mostly strings, some numbers, and kinds a comparison rejects (bool, list)
STORED = st.sampled_from(["1", "a", "a'b", "11.222.333/0001-81", "11222333000181", "", None,
                          1, 2, 1.0, 2.5, True, ["x"]])
LITERALS = st.sampled_from(["'1'", "'a'", "'a''b'", "'11.222.333/0001-81'",
                            "'11222333000181'", "''", "1", "2", "2.5", "null", "true"])


def _clause() -> st.SearchStrategy[str]:
    field = st.sampled_from(FIELDS)
    eq = st.builds(lambda f, v: f"{f} eq {v}", field, LITERALS)
    ne = st.builds(lambda f, v: f"{f} ne {v}", field, LITERALS)
    among = st.builds(lambda f, vs: f"{f} in ({', '.join(vs)})", field,
                      st.lists(LITERALS, min_size=2, max_size=3))
    other = st.sampled_from(["Id gt 3", "contains(Name, 'a')", "Name eq 'n1'", "Register ne '1'",
                             "TypeId gt 1", "LastUpdateDate ge 2024-03-01T15:00:05Z",
                             "LastUpdateDate lt 2024-03-01T15:00:08Z",
                             "CreateDate le 2024-03-01T15:00:03Z"])
    return st.one_of(eq, eq, ne, among, other)


FILTERS = st.recursive(
    _clause(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=4,
)
RECORDS = st.lists(st.fixed_dictionaries({f: STORED for f in FIELDS}), min_size=0, max_size=12)
EDITS = st.lists(st.tuples(st.integers(1, 14), st.sampled_from(["update", "delete", "insert"]),
                           st.sampled_from(FIELDS), STORED), max_size=6)


def _scan(sim: PloomesSim, text: str, top: int) -> tuple[int, list[int]]:
    """What the records evaluated in id order give, from the earliest LastUpdateDate the filter
    allows (as before the indexes): (400, []) on an error, else the page."""
    found: list[int] = []
    try:
        flt = parse_filter(text)
        since = flt.lower_bound("LastUpdateDate")
        for row in sorted(sim.db["Contacts"], key=lambda r: r.id):
            if since is not None and row.updated < since:
                continue
            if flt.matches(_View(sim, "Contacts", row)):
                found.append(row.id)
                if len(found) > top:
                    break
    except FilterError:
        return 400, []
    return 200, found[:top]


def _served(client: TestClient, text: str, top: int) -> tuple[int, list[int]]:
    response = client.get("/Contacts", params={"$filter": text, "$top": str(top),
                                               "$orderby": "Id"})
    if response.status_code != 200:
        return response.status_code, []
    return 200, [r["Id"] for r in response.json()["value"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=RECORDS, edits=EDITS, filters=st.lists(FILTERS, min_size=1, max_size=3),
       top=st.sampled_from([1, 2, 300]))
# found once: the row of the wrong type is outside the window, which a scan applies first
@example(records=[{"Register": "1"}, {"Register": 1}], edits=[],
         filters=["(Register eq '1') and (LastUpdateDate ge 2024-03-01T15:00:05Z)"], top=1)
# the listing of a quiet run: records last changed by ponte's own user (2) left out
@example(records=[{"UpdaterId": 2}, {"UpdaterId": None}, {"UpdaterId": "2"}, {"UpdaterId": 1}],
         edits=[], top=300, filters=[
             ("(LastUpdateDate ge 2024-03-01T15:00:00Z) and (LastUpdateDate lt "
              "2024-03-01T15:00:08Z) and (UpdaterId ne 2 or UpdaterId eq null)")])
def test_indexed_filter_answers_what_a_scan_answers(records: list[dict[str, Any]],
                                                    edits: list[tuple[int, str, str, Any]],
                                                    filters: list[str], top: int) -> None:
    sim = PloomesSim(user_key=KEY)
    table = sim.db["Contacts"]
    for i, data in enumerate(records):
        table.insert({"Name": f"n{i}", **data}, T0 + timedelta(seconds=i))
    with TestClient(create_app(sim), headers={"User-Key": KEY}) as client:
        for text in filters:  # the first query builds the indexes the filter names
            assert _served(client, text, top) == _scan(sim, text, top), text
        for n, (rid, action, field, value) in enumerate(edits):  # kept current by the table
            at = T0 + timedelta(minutes=1, seconds=n)
            if action == "insert":
                table.insert({"Name": "new", field: value}, at)
            elif table.get(rid) is not None:
                if action == "update":
                    table.update(rid, {field: value}, at)
                else:
                    table.delete(rid)
        for text in filters:
            assert _served(client, text, top) == _scan(sim, text, top), text


def test_search_by_document_narrows_to_the_matching_contacts() -> None:
    """The engine's natural-key search (``Register``/``CNPJ``/``CPF`` ``eq`` joined by ``or``,
    then ``and Id gt``) reads the index: the answer is the matching contacts only, and the
    index holds each contact under its document."""
    sim = PloomesSim(user_key=KEY)
    for i in range(1, 201):
        sim.db["Contacts"].insert({"Name": f"c{i}", "Register": f"{i:014d}",
                                   "CNPJ": f"{i:02d}.000.000/0001-00"}, T0)
    text = ("(Register eq '00000000000007' or CNPJ eq '07.000.000/0001-00' or CPF eq '7') or "
            "(Register eq '00000000000150' or CNPJ eq '99.000.000/0001-00') and Id gt 5")
    with TestClient(create_app(sim), headers={"User-Key": KEY}) as client:
        assert _served(client, text, 300) == _scan(sim, text, 300) == (200, [7, 99, 150])
    index = sim.db["Contacts"].indexes["Register"]
    assert index.by_value["00000000000150"] == {150} and len(index.by_value) == 200
    assert parse_filter(text).candidates(sim.db["Contacts"].index) == {7, 99, 150}
    assert parse_filter(f"({text}) and Id gt 100").candidates(sim.db["Contacts"].index) \
        == {7, 99, 150}
    assert parse_filter(f"Id gt 5 and ({text})").candidates(sim.db["Contacts"].index) is None


def _scan_by_int(sim: OmieSim, code: str) -> Row | None:
    for row in sim.db["clientes"]:
        value = row.data.get("codigo_cliente_integracao")
        if value not in (None, "") and str(value) == code:
            return row
    return None


@settings(max_examples=200, deadline=None)
@given(codes=st.lists(st.sampled_from(["1", "2", "a", "", None, 1, 2, True]), max_size=10),
       edits=st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["1", "2", 2, None])),
                      max_size=4),
       wanted=st.sampled_from(["1", "2", "a", "True", "3"]))
def test_omie_lookup_by_integration_code_answers_what_a_scan_answers(
        codes: list[Any], edits: list[tuple[int, Any]], wanted: str) -> None:
    sim = OmieSim()
    table = sim.db["clientes"]
    for code in codes:
        table.insert({"razao_social": "x", "codigo_cliente_integracao": code}, T0)
    first = sim._by_int(CLIENTES, wanted)
    assert first is _scan_by_int(sim, wanted)
    for rid, code in edits:
        if table.get(rid) is not None:
            table.update(rid, {"codigo_cliente_integracao": code}, T0)
    assert sim._by_int(CLIENTES, wanted) is _scan_by_int(sim, wanted)


@pytest.mark.parametrize("code", ["erp:7", "erp:150"])
def test_omie_consult_by_integration_code_after_changes(code: str) -> None:
    """``ConsultarCliente`` by integration code, through the API, after the code moved."""
    sim = OmieSim()
    for i in range(1, 201):
        sim.db["clientes"].insert({"razao_social": f"c{i}", "codigo_cliente_integracao":
                                   f"erp:{i}"}, T0)
    sim._by_int(CLIENTES, "erp:1")  # builds the index
    moved = int(code.split(":")[1])
    sim.db["clientes"].update(moved, {"codigo_cliente_integracao": "moved"}, T0)
    body = {"call": "ConsultarCliente", "app_key": sim.app_key, "app_secret": sim.app_secret,
            "param": [{"codigo_cliente_integracao": code}]}
    status, answer, _, _ = sim.handle("geral/clientes", json.dumps(body).encode())
    assert status == 500 and "não cadastrado" in json.dumps(answer, ensure_ascii=False)
    body["param"] = [{"codigo_cliente_integracao": "moved"}]
    status, answer, _, _ = sim.handle("geral/clientes", json.dumps(body).encode())
    assert status == 200 and answer["codigo_cliente_omie"] == moved


def _scan_by_change(sim: PloomesSim, text: str | None, top: int) -> list[int]:
    flt = parse_filter(text) if text else None
    rows = sorted(sim.db["Contacts"],
                  key=lambda r: (r.updated.replace(microsecond=r.updated.microsecond // 1000
                                                   * 1000), r.id))
    found = [r.id for r in rows if flt is None or flt.matches(_View(sim, "Contacts", r))]
    return found[:top]


STAMPS = st.integers(0, 8).map(lambda n: T0 + timedelta(milliseconds=n // 3,
                                                          microseconds=n % 3 * 300))
INSTANTS = st.sampled_from(["2024-03-01T15:00:00Z", "2024-03-01T15:00:00.001Z",
                            "2024-03-01T15:00:00.002Z", "2024-03-01T12:00:00.001-03:00"])
CHANGE_FILTERS = st.one_of(
    st.none(),
    st.builds(lambda a: f"LastUpdateDate ge {a}", INSTANTS),
    st.builds(lambda a, b: f"LastUpdateDate ge {a} and LastUpdateDate lt {b}", INSTANTS,
              INSTANTS),
    st.builds(lambda a, k: f"LastUpdateDate gt {a} or (LastUpdateDate eq {a} and Id gt {k})",
              INSTANTS, st.integers(0, 10)),
    st.builds(lambda a, b, k: f"LastUpdateDate ge {a} and (LastUpdateDate gt {b} or "
              f"(LastUpdateDate eq {b} and Id gt {k}))", INSTANTS, INSTANTS, st.integers(0, 10)),
)


@settings(max_examples=150, deadline=None)
@given(stamps=st.lists(STAMPS, max_size=10),
       edits=st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["update", "delete"]),
                                STAMPS), max_size=4),
       text=CHANGE_FILTERS, top=st.sampled_from([1, 3, 300]))
def test_listing_by_change_answers_what_a_sort_answers(
        stamps: list[datetime], edits: list[tuple[int, str, datetime]], text: str | None,
        top: int) -> None:
    """``$orderby=LastUpdateDate,Id`` reads the table's cached order from a binary search on
    the filter's lower bound; the answer is the sorted, filtered table's, after writes too."""
    sim = PloomesSim(user_key=KEY)
    table = sim.db["Contacts"]
    for i, at in enumerate(stamps):
        table.insert({"Name": f"n{i}"}, at)
    params = {"$orderby": "LastUpdateDate,Id", "$top": str(top), "$select": "Id"}
    if text:
        params["$filter"] = text
    with TestClient(create_app(sim), headers={"User-Key": KEY}) as client:
        def served() -> list[int]:
            response = client.get("/Contacts", params=params)
            assert response.status_code == 200, response.text
            return [r["Id"] for r in response.json()["value"]]

        assert served() == _scan_by_change(sim, text, top)
        for rid, action, at in edits:
            if table.get(rid) is not None:
                if action == "update":
                    table.update(rid, {"Name": "changed"}, at)
                else:
                    table.delete(rid)
            table.insert({"Name": "new"}, at)
        assert served() == _scan_by_change(sim, text, top)


def test_a_quiet_listing_reads_the_last_updater_index_not_every_record() -> None:
    """``UpdaterId ne <ponte's user>`` behind the window's ``LastUpdateDate`` bounds narrows
    through the index of ``UpdaterId`` (a person's where none is stored): the contacts ponte
    wrote last are never evaluated, the others are answered as a scan answers."""
    sim = PloomesSim(user_key=KEY)
    for i in range(1, 301):
        sim.db["Contacts"].insert({"Name": f"c{i}", "UpdaterId": 2 if i % 100 else None}, T0)
    text = ("(LastUpdateDate ge 2024-03-01T14:00:00Z) and (LastUpdateDate lt "
            "2024-03-01T16:00:00Z) and (UpdaterId ne 2 or UpdaterId eq null)")
    with TestClient(create_app(sim), headers={"User-Key": KEY}) as client:
        assert _served(client, text, 300) == _scan(sim, text, 300) == (200, [100, 200, 300])
    index = sim.db["Contacts"].indexes["UpdaterId"]
    assert index.default == 1 and index.by_value[1] == {100, 200, 300}
    assert len(index.by_value[2]) == 297
