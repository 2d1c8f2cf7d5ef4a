"""The Ploomes simulator, exercised only through HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from etl.sandbox.ploomes import MAX_TOP, PloomesSim, create_app

T0 = datetime(2024, 3, 1, 15, 0, 0, 250000, tzinfo=UTC)  # 12:00:00.250 in Brasília
DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-03:00$")


def values(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["value"]


def ids(response: httpx.Response) -> list[int]:
    return [r["Id"] for r in values(response)]


def contacts(client: TestClient, **params: str) -> httpx.Response:
    return client.get("/Contacts", params={f"${k}": v for k, v in params.items()})


CONTACTS = [
    {"TypeId": 1, "Name": "Acme Ltda", "Register": "11222333000181", "CityId": 1, "StateId": 25,
     "StatusId": 1, "ZipCode": 1310100, "Key": "erp:1"},
    {"TypeId": 1, "Name": "Beta O'Neil", "Register": "22333444000172", "CityId": 7, "StateId": 19,
     "StatusId": 2, "ZipCode": 20040000},
    {"TypeId": 2, "Name": "Carla Dias", "Register": "12345678909", "CityId": 1, "StateId": 25,
     "StatusId": 1, "Phones": [{"PhoneNumber": "(11) 98765-4321", "TypeId": 1, "CountryId": 76}]},
    {"TypeId": 2, "Name": "Davi Acme", "CityId": None, "StatusId": 1},
    {"TypeId": 1, "Name": "Eco Comércio", "Register": "33444555000163", "CityId": 9,
     "StateId": 13, "StatusId": 1},
]


@pytest.fixture
def five(ploomes_sim: PloomesSim) -> PloomesSim:
    """Five contacts written one second apart from T0 (ids 1..5)."""
    for i, data in enumerate(CONTACTS):
        ploomes_sim.db["Contacts"].insert(dict(data), T0 + timedelta(seconds=i))
    return ploomes_sim


# --- auth, envelope, CRUD -------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"User-Key": "wrong"}, {"User-Key": ""}])
def test_missing_or_bad_key_is_401_with_json_error(ploomes_sim: PloomesSim,
                                                   headers: dict[str, str]) -> None:
    client = TestClient(create_app(ploomes_sim))
    response = client.get("/Contacts", headers=headers)
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message"}


def test_envelope_and_date_format(ploomes_client: TestClient, five: PloomesSim) -> None:
    response = contacts(ploomes_client)
    body = response.json()
    assert body["@odata.context"] == "http://testserver/$metadata#Contacts"
    first = body["value"][0]
    assert first["Id"] == 1
    assert DATE_RE.match(first["CreateDate"]) and DATE_RE.match(first["LastUpdateDate"])
    assert first["LastUpdateDate"] == "2024-03-01T12:00:00.250-03:00"
    phones = body["value"][2]["Phones"]
    assert phones[0]["ContactId"] == 3 and isinstance(phones[0]["Id"], int)


@pytest.mark.parametrize(
    ("collection", "create", "change"),
    [
        ("Contacts", {"Name": "Nova", "TypeId": 1, "CityId": 2, "Key": "x1"}, {"Name": "Nova SA"}),
        ("Products", {"Name": "Parafuso", "Code": "P-1", "UnitPrice": 1.5}, {"UnitPrice": 2.0}),
        ("Deals", {"Title": "Negócio"}, {"Amount": 100}),
        ("Orders", {"ContactId": 1, "Products": []}, {"Description": "urgente"}),
    ],
)
def test_crud(ploomes_client: TestClient, five: PloomesSim, collection: str,
              create: dict[str, Any], change: dict[str, Any]) -> None:
    created = values(ploomes_client.post(f"/{collection}", json=create))
    assert len(created) == 1
    record = created[0]
    rid = record["Id"]
    assert {k: record[k] for k in create} == create
    assert record["CreateDate"] == record["LastUpdateDate"]

    five.clock.advance(5)
    updated = values(ploomes_client.patch(f"/{collection}({rid})", json=change))[0]
    assert {k: updated[k] for k in change} == change
    untouched = next(k for k in create if k not in change)
    assert updated[untouched] == create[untouched]
    assert updated["LastUpdateDate"] > record["LastUpdateDate"]
    assert updated["CreateDate"] == record["CreateDate"]
    assert values(ploomes_client.get(f"/{collection}({rid})")) == [updated]

    deleted = ploomes_client.delete(f"/{collection}({rid})")
    assert (deleted.status_code, deleted.content) == (200, b"")
    for method in ("GET", "PATCH", "DELETE"):
        response = ploomes_client.request(method, f"/{collection}({rid})", json={})
        assert response.status_code == 404
        assert "not found" in response.json()["error"]["message"]
    assert rid not in ids(ploomes_client.get(f"/{collection}"))


def test_order_number_lines_and_contact_name(ploomes_client: TestClient, five: PloomesSim) -> None:
    product = values(ploomes_client.post("/Products", json={"Name": "Caneta", "Code": "C1"}))[0]
    line = {"ProductId": product["Id"], "Quantity": 3, "UnitPrice": 2.5}
    order = values(ploomes_client.post("/Orders", json={"ContactId": 2, "Products": [line]}))[0]
    assert order["OrderNumber"] == order["Id"]
    assert order["ContactName"] == "Beta O'Neil"
    (rendered,) = order["Products"]
    assert rendered["OrderId"] == order["Id"] and rendered["ProductName"] == "Caneta"
    assert rendered["Total"] == 7.5 and order["Amount"] == 7.5


@pytest.mark.parametrize(
    ("collection", "body", "needle"),
    [
        ("Contacts", {"TypeId": 1}, "Name"),
        ("Contacts", {"Name": "x", "Foo": 1}, "Foo"),
        ("Contacts", {"Name": "x", "CityId": 999999}, "CityId"),
        ("Contacts", {"Name": "x", "City": {"IBGECode": 3550308}}, "CityId"),
        ("Contacts", {"Name": "x", "ZipCode": "abc"}, "ZipCode"),
        ("Products", {"Name": "x", "Suspended": "no"}, "Suspended"),
        ("Orders", {"ContactId": 1, "Products": [{"ProductId": 999}]}, "ProductId"),
    ],
)
def test_bad_writes_are_400_naming_the_field(ploomes_client: TestClient, five: PloomesSim,
                                             collection: str, body: dict[str, Any],
                                             needle: str) -> None:
    response = ploomes_client.post(f"/{collection}", json=body)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


def test_reference_collections(ploomes_client: TestClient) -> None:
    states = values(ploomes_client.get("/Cities@Countries@States", params={"$top": "300"}))
    assert len(states) == 27 and {"Id", "Name", "Short"} <= set(states[0])
    assert values(ploomes_client.get("/States", params={"$filter": "Short eq 'SP'"}))[0]["Name"] \
        == "São Paulo"
    city = values(ploomes_client.get("/Cities", params={"$filter": "IBGECode eq 3550308"}))
    assert city[0]["Name"] == "São Paulo"
    assert [s["Name"] for s in values(ploomes_client.get("/Contacts@Status"))] == \
        ["Ativo", "Inativo"]
    assert len(values(ploomes_client.get("/Orders@Stages"))) >= 3
    assert values(ploomes_client.get("/Users"))
    assert values(ploomes_client.get("/Self"))[0]["Email"]
    assert ploomes_client.post("/Cities", json={"Name": "x"}).status_code == 405
    assert ploomes_client.get("/Nope").status_code == 404


# --- $filter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("Id eq 2", [2]),
        ("Id ne 2", [1, 3, 4, 5]),
        ("Id gt 3", [4, 5]),
        ("Id ge 3", [3, 4, 5]),
        ("Id lt 2", [1]),
        ("Id le 2", [1, 2]),
        ("Name eq 'Beta O''Neil'", [2]),
        ("TypeId eq 1 and StatusId eq 1", [1, 5]),
        ("TypeId eq 2 or StatusId eq 2", [2, 3, 4]),
        ("TypeId eq 1 and (StatusId eq 2 or CityId eq 9)", [2, 5]),
        ("(TypeId eq 1 and StatusId eq 2) or CityId eq 9", [2, 5]),
        ("not (TypeId eq 1)", [3, 4]),
        ("contains(Name,'Acme')", [1, 4]),
        ("startswith(Name,'Eco')", [5]),
        ("endswith(Name,'Ltda')", [1]),
        ("contains(tolower(Name),'acme')", [1, 4]),
        ("CityId eq null", [4]),
        ("Key eq 'erp:1'", [1]),
        ("Register eq '12345678909'", [3]),
        ("ZipCode ge 20000000", [2]),
        ("City/IBGECode eq 3550308", [1, 3]),
        ("State/Short eq 'RJ'", [2]),
        ("Status/Name eq 'Inativo'", [2]),
        ("Phones/any(p: contains(p/PhoneNumber,'98765'))", [3]),
        ("Id in (1, 5)", [1, 5]),
        ("LastUpdateDate gt 2024-03-01T15:00:02Z", [3, 4, 5]),
        ("LastUpdateDate gt 2024-03-01T15:00:02.250Z", [4, 5]),
        ("CreateDate lt 2024-03-01T12:00:01.250-03:00", [1]),
    ],
)
def test_filter_operators(ploomes_client: TestClient, five: PloomesSim, expr: str,
                          expected: list[int]) -> None:
    assert ids(contacts(ploomes_client, filter=expr)) == expected


@pytest.mark.parametrize(
    ("literal", "op", "included"),
    [
        ("2024-03-01T15:00:02.250Z", "ge", True),
        ("2024-03-01T15:00:02.250Z", "gt", False),
        ("2024-03-01T12:00:02.250-03:00", "ge", True),
        ("2024-03-01T12:00:02.250-03:00", "gt", False),
        ("2024-03-01T12:00:02.250-03:00", "eq", True),
        ("2024-03-01T15:00:02.2509Z", "eq", True),  # compared at millisecond precision
        ("2024-03-01T15:00:02Z", "gt", True),
        ("2024-03-01T15:00:02.251Z", "lt", True),
        ("2024-03-01T15:00:02.250Z", "lt", False),
    ],
)
def test_datetime_filter_at_the_watermark(ploomes_client: TestClient, five: PloomesSim,
                                          literal: str, op: str, included: bool) -> None:
    # contact 3 was written at T0 + 2 s = 15:00:02.250Z
    got = ids(contacts(ploomes_client, filter=f"LastUpdateDate {op} {literal}"))
    assert (3 in got) is included


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("Name eq", "invalid $filter"),
        ("Foo eq 1", "Foo"),
        ("Name eq 5", "cannot compare Name"),
        ("frobnicate(Name)", "frobnicate"),
        ("Name eq 'unterminated", "invalid $filter"),
    ],
)
def test_bad_filter_is_400_naming_the_problem(ploomes_client: TestClient, five: PloomesSim,
                                              expr: str, needle: str) -> None:
    response = contacts(ploomes_client, filter=expr)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


# --- paging, ordering, projection -----------------------------------------------------------


def test_identical_timestamps_page_exactly_once_with_skip(ploomes_client: TestClient,
                                                          ploomes_sim: PloomesSim) -> None:
    for i in range(53):
        ploomes_sim.db["Contacts"].insert({"Name": f"c{i}"}, T0 + timedelta(seconds=i // 20))
    seen: list[int] = []
    for skip in range(0, 60, 10):
        seen += ids(contacts(ploomes_client, filter="LastUpdateDate ge 2024-03-01T15:00:00Z",
                             orderby="LastUpdateDate,Id", top="10", skip=str(skip)))
    assert seen == list(range(1, 54))


def test_top_is_capped_and_defaults(ploomes_client: TestClient, ploomes_sim: PloomesSim) -> None:
    for i in range(MAX_TOP + 20):
        ploomes_sim.db["Products"].insert({"Name": f"p{i}"}, T0)
    get = ploomes_client.get
    assert len(values(get("/Products", params={"$top": "1000"}))) == MAX_TOP
    assert len(values(get("/Products"))) == MAX_TOP
    assert len(values(get("/Products", params={"$skip": "300"}))) == 20
    assert len(values(get("/Products", params={"$top": "7"}))) == 7
    assert get("/Products", params={"$top": "-1"}).status_code == 400


def test_select_and_expand(ploomes_client: TestClient, five: PloomesSim) -> None:
    (record,) = values(contacts(ploomes_client, filter="Id eq 1", select="Id,Name",
                                expand="City,State,Owner,Status,Phones,OtherProperties"))
    assert record == {
        "Id": 1, "Name": "Acme Ltda",
        "City": {"Id": 1, "Name": "São Paulo", "IBGECode": 3550308, "StateId": 25},
        "State": {"Id": 25, "Name": "São Paulo", "Short": "SP"},
        "Owner": None, "Status": {"Id": 1, "Name": "Ativo"},
    }
    full = values(contacts(ploomes_client, filter="Id eq 4", expand="City"))[0]
    assert full["City"] is None and "State" not in full and full["Phones"] == []
    assert contacts(ploomes_client, expand="Nope").status_code == 400
    assert contacts(ploomes_client, select="Nope").status_code == 400
    nested = contacts(ploomes_client, filter="Id eq 1", expand="Owner($select=Id,Name),City")
    assert values(nested)[0]["City"]["Id"] == 1


@pytest.mark.parametrize(
    ("orderby", "expected"),
    [
        ("Id desc", [5, 4, 3, 2, 1]),
        ("LastUpdateDate desc", [5, 4, 3, 2, 1]),
        ("TypeId desc,Id asc", [3, 4, 1, 2, 5]),
        ("TypeId,Name desc", [5, 2, 1, 4, 3]),
        ("City/Name,Id", [4, 5, 2, 1, 3]),  # null first; Belo Horizonte < Rio < São Paulo
    ],
)
def test_orderby(ploomes_client: TestClient, five: PloomesSim, orderby: str,
                 expected: list[int]) -> None:
    assert ids(contacts(ploomes_client, orderby=orderby)) == expected


# --- rate limit and faults ------------------------------------------------------------------


def test_rate_limit_small(ploomes_key: str) -> None:
    sim = PloomesSim(user_key=ploomes_key, rpm=5)
    client = TestClient(create_app(sim), headers={"User-Key": ploomes_key})
    assert [client.get("/Users").status_code for _ in range(5)] == [200] * 5
    refused = client.get("/Users")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["message"]
    assert client.get("/_sandbox/clock").status_code == 200  # admin is not limited


def test_rate_limit_default_120(ploomes_client: TestClient) -> None:
    statuses = [ploomes_client.get("/States", params={"$top": "1"}).status_code
                for _ in range(121)]
    assert statuses == [200] * 120 + [429]


def set_faults(client: TestClient, **knobs: Any) -> None:
    assert client.post("/_sandbox/faults", json=knobs).status_code == 200


def test_fault_error_rate(ploomes_client: TestClient) -> None:
    set_faults(ploomes_client, error_rate=1.0)
    response = ploomes_client.get("/Contacts")
    assert response.status_code == 500 and response.json()["error"]["message"]


def test_fault_burst_429(ploomes_client: TestClient) -> None:
    set_faults(ploomes_client, burst_429=2)
    statuses = [ploomes_client.get("/Contacts").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]


def test_fault_drop_breaks_the_connection(ploomes_client: TestClient) -> None:
    set_faults(ploomes_client, drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        ploomes_client.get("/Contacts")
    with pytest.raises(httpx.TransportError):  # a write is applied, its answer lost
        ploomes_client.post("/Contacts", json={"Name": "lost answer"})
    counts = ploomes_client.get("/_sandbox/requests").json()["requests"]
    assert {"endpoint": "GET /Contacts", "status": 0, "count": 1} in counts
    assert {"endpoint": "POST /Contacts", "status": 0, "count": 1} in counts
    dump = ploomes_client.get("/_sandbox/Contacts").json()
    assert [r["Name"] for r in dump["records"]] == ["lost answer"]


def test_fault_timeout_and_latency_still_answer(ploomes_client: TestClient) -> None:
    set_faults(ploomes_client, timeout_rate=1.0, timeout_s=0.01, latency_ms=1)
    assert ploomes_client.get("/Contacts").status_code == 200


def test_fault_page_cap_and_next_link(ploomes_client: TestClient, five: PloomesSim) -> None:
    set_faults(ploomes_client, page_cap=2, next_link=True)
    body = contacts(ploomes_client, top="300").json()
    assert [r["Id"] for r in body["value"]] == [1, 2]
    following = ploomes_client.get(body["@odata.nextLink"]).json()
    assert [r["Id"] for r in following["value"]] == [3, 4]
    last = ploomes_client.get(following["@odata.nextLink"]).json()
    assert [r["Id"] for r in last["value"]] == [5] and "@odata.nextLink" not in last


def test_fault_same_timestamp(ploomes_client: TestClient) -> None:
    set_faults(ploomes_client, same_timestamp=True)
    a = values(ploomes_client.post("/Contacts", json={"Name": "a"}))[0]
    ploomes_client.post("/_sandbox/clock", json={"advance_s": 10})
    b = values(ploomes_client.post("/Contacts", json={"Name": "b"}))[0]
    assert a["LastUpdateDate"] == b["LastUpdateDate"]
    set_faults(ploomes_client, same_timestamp=False)
    c = values(ploomes_client.post("/Contacts", json={"Name": "c"}))[0]
    assert c["LastUpdateDate"] > a["LastUpdateDate"]


# --- admin API ------------------------------------------------------------------------------


def test_admin_acts_as_a_ui_user(ploomes_client: TestClient) -> None:
    admin = TestClient(ploomes_client.app)  # no User-Key needed
    made = admin.post("/_sandbox/Contacts", json={"Name": "Pela UI", "TypeId": 1})
    assert made.status_code == 201
    rid, first = made.json()["Id"], made.json()["LastUpdateDate"]
    admin.post("/_sandbox/clock", json={"advance_s": 3600})
    changed = admin.patch(f"/_sandbox/Contacts/{rid}", json={"Note": "ligar"}).json()
    assert changed["Note"] == "ligar"
    bump = (datetime.fromisoformat(changed["LastUpdateDate"]) - datetime.fromisoformat(first))
    assert bump >= timedelta(seconds=3600)
    seen = values(contacts(ploomes_client, filter=f"LastUpdateDate gt {first}"))
    assert [r["Id"] for r in seen] == [rid]
    dump = admin.get("/_sandbox/Contacts").json()
    assert dump["count"] == 1 and dump["records"][0]["Note"] == "ligar"
    assert admin.delete(f"/_sandbox/Contacts/{rid}").status_code == 200
    assert ids(contacts(ploomes_client)) == []


def test_admin_requests_faults_and_reset(ploomes_client: TestClient, five: PloomesSim) -> None:
    admin = TestClient(ploomes_client.app)
    ploomes_client.get("/Contacts")
    ploomes_client.post("/Contacts", json={"Name": "x"})
    ploomes_client.patch("/Contacts(1)", json={"Name": "y"})
    ploomes_client.delete("/Contacts(2)")
    admin.get("/Contacts")  # no key
    counts = {(c["endpoint"], c["status"]): c["count"]
              for c in admin.get("/_sandbox/requests").json()["requests"]}
    assert counts == {("GET /Contacts", 200): 1, ("POST /Contacts", 200): 1,
                      ("PATCH /Contacts", 200): 1, ("DELETE /Contacts", 200): 1,
                      ("GET /Contacts", 401): 1}
    assert admin.post("/_sandbox/faults", json={"nope": 1}).status_code == 400
    assert admin.get("/_sandbox/faults").json()["next_link"] is False
    assert admin.post("/_sandbox/reset").status_code == 200
    assert ids(contacts(ploomes_client)) == []
    assert len(values(ploomes_client.get("/States", params={"$top": "50"}))) == 27


# --- Register, CNPJ and CPF: one document (knob tax_id_in_step) -----------------------------

CNPJ_A, CNPJ_B, CPF_A = "11222333000181", "45723174000110", "12345678909"
DOCS = ("Register", "CNPJ", "CPF")


@pytest.mark.parametrize(
    ("create", "change", "in_step", "off"),
    [
        # ponte's way: Register (and CNPJ/CPF by TypeId)
        ({"TypeId": 1, "Register": CNPJ_A}, None,
         (CNPJ_A, CNPJ_A, None), (CNPJ_A, None, None)),
        ({"TypeId": 2, "Register": CPF_A}, None,
         (CPF_A, None, CPF_A), (CPF_A, None, None)),
        # a user's way: only the UI field, punctuated
        ({"TypeId": 1, "CNPJ": "11.222.333/0001-81"}, None,
         (CNPJ_A, CNPJ_A, None), (None, "11.222.333/0001-81", None)),
        ({"TypeId": 2, "CPF": CPF_A}, None, (CPF_A, None, CPF_A), (None, None, CPF_A)),
        # a later change of one field moves the others
        ({"TypeId": 1, "Register": CNPJ_A}, {"CNPJ": CNPJ_B},
         (CNPJ_B, CNPJ_B, None), (CNPJ_A, CNPJ_B, None)),
        ({"TypeId": 1, "Register": CNPJ_A}, {"Register": CNPJ_B},
         (CNPJ_B, CNPJ_B, None), (CNPJ_B, None, None)),
        # a TypeId change moves the document to the other field
        ({"TypeId": 2, "Register": CNPJ_A}, {"TypeId": 1},
         (CNPJ_A, CNPJ_A, None), (CNPJ_A, None, None)),
        # clearing the document clears it everywhere; clearing the other type's field does not
        ({"TypeId": 1, "Register": CNPJ_A}, {"Register": ""},
         (None, None, None), ("", None, None)),
        ({"TypeId": 1, "Register": CNPJ_A}, {"CPF": None},
         (CNPJ_A, CNPJ_A, None), (CNPJ_A, None, None)),
        # no document at all: nothing invented
        ({"TypeId": 1, "Name": "Sem documento"}, {"TypeId": 2},
         (None, None, None), (None, None, None)),
    ],
)
@pytest.mark.parametrize("knob", [True, False])
@pytest.mark.parametrize("via", ["api", "ui"])
def test_register_cnpj_and_cpf_in_step_by_type(
        ploomes_client: TestClient, ploomes_sim: PloomesSim, create: dict[str, Any],
        change: dict[str, Any] | None, in_step: tuple[str | None, ...],
        off: tuple[str | None, ...], knob: bool, via: str) -> None:
    assert ploomes_sim.faults.tax_id_in_step  # on by default
    response = ploomes_client.post("/_sandbox/faults", json={"tax_id_in_step": knob})
    assert response.json()["tax_id_in_step"] is knob
    body = {"Name": "Contato", **create}
    if via == "api":
        rid = values(ploomes_client.post("/Contacts", json=body))[0]["Id"]
        if change is not None:
            values(ploomes_client.patch(f"/Contacts({rid})", json=change))
    else:
        rid = ploomes_client.post("/_sandbox/Contacts", json=body).json()["Id"]
        if change is not None:
            assert ploomes_client.patch(f"/_sandbox/Contacts/{rid}", json=change).status_code == 200
    # what a third-party reader of the API sees
    record = values(ploomes_client.get(f"/Contacts({rid})"))[0]
    assert tuple(record[f] for f in DOCS) == (in_step if knob else off)


@pytest.mark.parametrize(("sent", "stored"), [("N-0042", "N-0042"), ("42", "42"), (42, "42")])
def test_deal_number_is_a_string(ploomes_client: TestClient, five: PloomesSim, sent: object,
                                 stored: str) -> None:
    """The published Deals schema types DealNumber as a string."""
    deal = values(ploomes_client.post("/Deals", json={"Title": "Negócio", "DealNumber": sent}))[0]
    assert deal["DealNumber"] == stored
    found = values(ploomes_client.get("/Deals", params={"$filter": f"DealNumber eq '{stored}'"}))
    assert [d["Id"] for d in found] == [deal["Id"]]
    assert values(ploomes_client.post("/Deals", json={"Title": "Outro"}))[0]["DealNumber"] is None


def test_fields_lists_the_custom_fields_of_an_entity(ploomes_client: TestClient) -> None:
    custom = values(ploomes_client.get(
        "/Fields", params={"$filter": "EntityId eq 1 and Dynamic eq true"}))
    assert len(custom) == 11
    assert all(f["Key"].startswith("contact_") and f["Dynamic"] is True for f in custom)
    assert {"Limite de crédito", "Desconto especial (%)", "Volume de vendas 12m",
            "Última compra"} <= {f["Name"] for f in custom}
    typed = {f["Name"]: f["TypeId"] for f in custom}
    types = {t["Id"]: t["NativeType"] for t in values(ploomes_client.get("/Fields@Types"))}
    assert types[typed["Limite de crédito"]] == "Decimal"
    assert types[typed["Última compra"]] == "DateTime"
    everything = values(ploomes_client.get("/Fields", params={"$filter": "EntityId eq 1"}))
    assert len(everything) > len(custom)  # the standard fields are listed too
    orders = values(ploomes_client.get(
        "/Fields", params={"$filter": "EntityId eq 4 and Dynamic eq true"}))
    assert [f["Key"][:6] for f in orders] == ["order_"]


LIMIT = "contact_0B6E2D48-91C3-4F7A-B5E2-7C1D9A3F6B04"  # Limite de crédito, Decimal
SEGMENT = "contact_9F0D4B61-7A2E-4C35-8E1B-6D3A5C2F7E90"  # Segmento, String
SIZE = "contact_A8E1F6C3-4B9D-4A72-8E5C-0D3B6F9A1C27"  # Porte, options


def _custom(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["FieldKey"]: x for x in record["OtherProperties"]}


def test_custom_values_are_stored_by_key_and_a_patch_changes_only_those_it_names(
        ploomes_client: TestClient) -> None:
    items = [{"FieldKey": LIMIT, "DecimalValue": 1500.5},
             {"FieldKey": SEGMENT, "StringValue": "Varejo"},
             {"FieldKey": SIZE, "ObjectValueId": 1003}]
    created = values(ploomes_client.post("/Contacts", json={"Name": "Com campos",
                                                            "OtherProperties": items}))[0]
    held = _custom(created)
    assert held[LIMIT]["DecimalValue"] == 1500.5 and held[LIMIT]["StringValue"] is None
    assert held[LIMIT]["ContactId"] == created["Id"] and held[LIMIT]["FieldId"] == 103
    assert held[SIZE]["ObjectValueName"] == "Grande"
    cid = created["Id"]
    ploomes_client.patch(f"/Contacts({cid})", json={"OtherProperties": [
        {"FieldKey": LIMIT, "DecimalValue": 99}]}).raise_for_status()
    after = _custom(values(ploomes_client.get(f"/Contacts({cid})",
                                              params={"$expand": "OtherProperties"}))[0])
    assert after[LIMIT]["DecimalValue"] == 99
    assert after[SEGMENT]["StringValue"] == "Varejo" and after[SIZE]["ObjectValueId"] == 1003
    ploomes_client.patch(f"/Contacts({cid})", json={"OtherProperties": [
        {"FieldKey": SEGMENT, "StringValue": None}]}).raise_for_status()
    listed = values(ploomes_client.get("/Contacts", params={"$filter": f"Id eq {cid}",
                                                            "$expand": "OtherProperties"}))[0]
    assert set(_custom(listed)) == {LIMIT, SIZE}  # cleared by a null value


@pytest.mark.parametrize(("item", "message"), [
    ({"FieldKey": LIMIT, "StringValue": "mil"}, "takes DecimalValue, not StringValue"),
    ({"FieldKey": LIMIT, "DecimalValue": "mil"}, "cannot take 'mil'"),
    ({"FieldKey": SIZE, "ObjectValueId": 7}, "has no option 7"),
    ({"FieldKey": "order_2C7E9A14-5B6D-4F08-A3E2-8D1C4B7F6A25", "StringValue": "x"},
     "does not exist"),
    ({"FieldKey": "contact_nope", "StringValue": "x"}, "'contact_nope' does not exist"),
])
def test_a_custom_value_the_field_cannot_hold_is_a_400(ploomes_client: TestClient,
                                                       item: dict[str, Any], message: str) -> None:
    response = ploomes_client.post("/Contacts", json={"Name": "X", "OtherProperties": [item]})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_tags_are_created_listed_and_checked_when_a_contact_names_them() -> None:
    from starlette.testclient import TestClient

    from etl.sandbox.ploomes import PloomesSim, create_app

    sim = PloomesSim()
    client = TestClient(create_app(sim), headers={"User-Key": sim.user_key})
    made = client.post("/Tags", json={"Name": "VIP", "EntityId": 1})
    assert made.status_code == 200, made.text
    tag = made.json()["value"][0]
    assert tag["Name"] == "VIP"
    listed = client.get("/Tags", params={"$filter": "EntityId eq 1"}).json()["value"]
    assert [t["Name"] for t in listed] == ["VIP"]
    contact = client.post("/Contacts", json={"Name": "X", "Tags": [{"TagId": tag["Id"]}]},
                          params={"$expand": "Tags"})
    assert contact.json()["value"][0]["Tags"] == [
        {"TagId": tag["Id"], "Tag": {"Id": tag["Id"], "Name": "VIP"}}]
    bad = client.post("/Contacts", json={"Name": "Y", "Tags": [{"TagId": 999}]})
    assert bad.status_code == 400 and "field 'Tags'" in bad.json()["error"]["message"]
