"""The webhook receiver over real HTTP: accepted events are stored once, before the answer;
refused, ping and uncovered calls store nothing or store ``ignored``."""

from __future__ import annotations

from pathlib import Path

from etl.serve.receiver import MAX_BODY_BYTES
from tests.engine.conftest import make_world
from tests.serve.conftest import Served, serve_world


def _contact(served: Served) -> dict[str, object]:
    row = next(iter(served.world.crm.db["Contacts"]))
    return {"Id": row.id, "Name": row.data.get("Name")}


def test_an_accepted_event_is_stored_once(served: Served) -> None:
    body = {"Action": "Update", "New": _contact(served), "Old": _contact(served)}
    first = served.post_crm("Contacts", body)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] is True
    again = served.post_crm("Contacts", body)  # a redelivery: the same body
    assert again.status_code == 200
    assert again.json()["stored"] is False
    events = served.store.events()
    assert len(events) == 1
    ev = events[0]
    assert (ev.side, ev.entity, ev.collection, ev.action, ev.status) == (
        "crm", "customers", "Contacts", "update", "pending")
    assert ev.key == str(body["New"]["Id"])  # type: ignore[index]
    payload = served.store.event_payload(ev.id)
    assert payload is not None and "ValidationKey" not in payload
    assert "crm-hook-secret" not in str(payload)


def test_erp_event_identity_is_its_message_id(served: Served) -> None:
    cliente = next(iter(served.world.erp.db["clientes"]))
    event = {"codigo_cliente_omie": cliente.id, "razao_social": "X"}
    assert served.post_erp("ClienteFornecedor.Alterado", event, message_id="m-1").json()[
        "stored"] is True
    assert served.post_erp("ClienteFornecedor.Alterado", event, message_id="m-1").json()[
        "stored"] is False
    assert served.post_erp("ClienteFornecedor.Alterado", event, message_id="m-2").json()[
        "stored"] is True
    events = served.store.events()
    assert [e.event_id for e in events] == ["m-2", "m-1"]
    assert all(e.entity == "customers" and e.key == str(cliente.id) for e in events)
    payload = served.store.event_payload(events[0].id)
    assert payload is not None and "appKey" not in payload and "appHash" not in payload


def test_missing_or_wrong_secret_is_refused_and_nothing_stored(served: Served) -> None:
    body = {"Action": "Update", "New": _contact(served)}
    missing = served.post_crm("Contacts", body, key=None)
    assert missing.status_code == 401
    wrong = served.post_crm("Contacts", body, key="not-the-key")
    assert wrong.status_code == 403
    assert "key" not in wrong.text.lower() and "secret" not in wrong.text.lower()
    erp_wrong = served.post_erp("ClienteFornecedor.Alterado", {"codigo_cliente_omie": 1},
                                message_id="m-x", app_key="999")
    assert erp_wrong.status_code == 403
    erp_missing = served.post_erp("ClienteFornecedor.Alterado", {"codigo_cliente_omie": 1},
                                  message_id="m-y", app_key=None)
    assert erp_missing.status_code == 401
    assert served.store.events() == []


def test_a_side_without_a_configured_secret_refuses_every_call(tmp_path: Path) -> None:
    world = make_world(f"sqlite:///{tmp_path / 'other.db'}", customers=2)
    for served in serve_world(world, crm_key=None):
        body = {"Action": "Update", "New": {"Id": 1}}
        assert served.post_crm("Contacts", body, key="").status_code == 403
        assert served.post_crm("Contacts", body, key="anything").status_code == 403
        assert served.post_crm("Contacts", body, key=None).status_code == 403
        # the other side still answers: its secret (the app key) is set
        ok = served.post_erp("ClienteFornecedor.Alterado", {"codigo_cliente_omie": 1},
                             message_id="m-ok")
        assert ok.status_code == 200
        assert [e.side for e in served.store.events()] == ["erp"]


def test_a_ping_is_answered_and_not_stored(served: Served) -> None:
    answer = served.http.post("/webhooks/omie", json={"ping": "omie"})
    assert answer.status_code == 200
    assert served.store.events() == []


def test_an_uncovered_collection_or_topic_is_acknowledged_as_ignored(served: Served) -> None:
    deal = {"Action": "Win", "New": {"Id": 5, "Title": "A deal"}}
    answer = served.post_crm("Deals", deal)  # Deals are not mapped
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    nfe = served.post_erp("NFe.NotaAutorizada", {"nIdNF": 3}, message_id="m-nfe")
    assert nfe.status_code == 200 and nfe.json()["status"] == "ignored"
    assert sorted(e.status for e in served.store.events()) == ["ignored", "ignored"]
    assert served.store.event_counts()["pending"] == 0
    served.settle()
    assert served.runs() == 0


def test_an_unknown_path_is_not_found(served: Served) -> None:
    assert served.http.post("/webhooks/other", json={}).status_code == 404


def test_a_body_over_the_limit_is_refused_and_nothing_stored(served: Served) -> None:
    big = {"Action": "Update", "New": {"Id": 1, "Notes": "x" * (MAX_BODY_BYTES + 10)}}
    answer = served.post_crm("Contacts", big)
    assert answer.status_code == 413
    # without a declared length (chunked), the stream is cut at the limit too
    chunks = (b'{"pad": "' + b"x" * 65536 for _ in range(20))
    answer = served.http.post("/webhooks/ploomes?collection=Contacts", content=chunks)
    assert answer.status_code == 413
    assert served.store.event_counts()["pending"] == 0
