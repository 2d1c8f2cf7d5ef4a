"""Ploomes webhooks: ``/Webhooks`` through the API, and deliveries over real HTTP to a receiver
on loopback (with retries, dead letters and the duplicate / reorder knobs)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from etl.sandbox.ploomes import PloomesSim
from tests.sandbox.receiver import Receiver

SEGMENTO = "contact_9F0D4B61-7A2E-4C35-8E1B-6D3A5C2F7E90"  # a Texto custom field of Contacts
LIMITE = "contact_0B6E2D48-91C3-4F7A-B5E2-7C1D9A3F6B04"  # a Decimal one


def register(client: TestClient, url: str, *, entity: int = 1, action: int = 2,
             **extra: Any) -> dict[str, Any]:
    r = client.post("/Webhooks", json={"EntityId": entity, "ActionId": action,
                                       "CallbackUrl": url, "ValidationKey": "k-123", **extra})
    assert r.status_code == 200, r.text
    value: dict[str, Any] = r.json()["value"][0]
    return value


def contact(client: TestClient, **fields: Any) -> dict[str, Any]:
    r = client.post("/Contacts", json={"Name": "Padaria São João", **fields})
    assert r.status_code == 200, r.text
    value: dict[str, Any] = r.json()["value"][0]
    return value


def test_register_list_patch_delete(ploomes_client: TestClient) -> None:
    hook = register(ploomes_client, "http://127.0.0.1:9/a", Name="clientes")
    assert set(hook) == {"Id", "EntityId", "SecondaryEntityId", "ActionId", "Name",
                         "CallbackUrl", "ValidationKey", "CreatorId", "CreateDate", "Active",
                         "UserWebhook"}
    assert hook["Active"] is True and hook["CreatorId"] == 2 and hook["Name"] == "clientes"
    other = register(ploomes_client, "https://example.com/b", entity=10, action=1)
    listed = ploomes_client.get("/Webhooks").json()
    assert "@odata.context" in listed
    assert [w["Id"] for w in listed["value"]] == [hook["Id"], other["Id"]]
    only = ploomes_client.get("/Webhooks", params={"$filter": "EntityId eq 10"}).json()["value"]
    assert [w["Id"] for w in only] == [other["Id"]]
    by_url = ploomes_client.get("/Webhooks", params={
        "$filter": "CallbackUrl eq 'http://127.0.0.1:9/a' and ActionId eq 2"}).json()["value"]
    assert [w["Id"] for w in by_url] == [hook["Id"]]
    r = ploomes_client.patch(f"/Webhooks({hook['Id']})", json={"Active": False})
    assert r.status_code == 200 and r.json()["value"][0]["Active"] is False
    assert ploomes_client.delete(f"/Webhooks({other['Id']})").status_code == 200
    assert ploomes_client.get(f"/Webhooks({other['Id']})").status_code == 404
    actions = ploomes_client.get("/Webhooks@Actions").json()["value"]
    assert {a["Id"]: a["Name"] for a in actions} == {1: "Create", 2: "Update", 3: "Delete",
                                                    4: "Win", 5: "Lose"}


@pytest.mark.parametrize(("body", "words"), [
    ({"EntityId": 99, "ActionId": 2, "CallbackUrl": "http://x/h"}, "EntityId 99"),
    ({"EntityId": 1, "ActionId": 9, "CallbackUrl": "http://x/h"}, "ActionId 9"),
    ({"EntityId": 1, "ActionId": 4, "CallbackUrl": "http://x/h"}, "Deals"),
    ({"EntityId": 1, "ActionId": 2, "CallbackUrl": "ftp://x/h"}, "not an http(s) URL"),
    ({"EntityId": 1, "ActionId": 2}, "'CallbackUrl' is required"),
    ({"EntityId": "1", "ActionId": 2, "CallbackUrl": "http://x/h"}, "must be int"),
    ({"EntityId": 1, "ActionId": 2, "CallbackUrl": "http://x/h", "Url": "x"}, "'Url'"),
])
def test_registration_is_validated(ploomes_client: TestClient, body: dict[str, Any],
                                   words: str) -> None:
    r = ploomes_client.post("/Webhooks", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]
    assert ploomes_client.get("/Webhooks").json()["value"] == []


def test_patch_is_validated_too(ploomes_client: TestClient) -> None:
    hook = register(ploomes_client, "http://127.0.0.1:9/a")
    r = ploomes_client.patch(f"/Webhooks({hook['Id']})", json={"CallbackUrl": "mailto:x@y"})
    assert r.status_code == 400 and "CallbackUrl" in r.json()["error"]["message"]


def test_update_delivers_old_and_new_with_custom_fields_as_a_map(
        ploomes_client: TestClient, ploomes_sim: PloomesSim, receiver: Receiver) -> None:
    made = contact(ploomes_client, Email="a@example.com", Phones=[{"PhoneNumber": "11 5555"}],
                   OtherProperties=[{"FieldKey": SEGMENTO, "StringValue": "Varejo"}])
    hook = register(ploomes_client, receiver.url())
    r = ploomes_client.patch(f"/Contacts({made['Id']})", json={
        "Email": "b@example.com",
        "OtherProperties": [{"FieldKey": LIMITE, "DecimalValue": 1500.5}]})
    assert r.status_code == 200
    (hit,) = receiver.wait_for(1)
    body = hit.json
    assert {k: body[k] for k in ("Action", "EntityId", "ActionId", "WebhookId", "AccountId",
                                  "ValidationKey")} == {
        "Action": "Update", "EntityId": 1, "ActionId": 2, "WebhookId": hook["Id"],
        "AccountId": 1, "ValidationKey": "k-123"}
    assert body["Old"]["Email"] == "a@example.com" and body["New"]["Email"] == "b@example.com"
    assert body["Old"]["OtherProperties"] == {SEGMENTO: "Varejo"}
    assert body["New"]["OtherProperties"] == {SEGMENTO: "Varejo", LIMITE: 1500.5}
    assert body["New"]["Phones"][0]["PhoneNumber"] == "11 5555"
    shown = ploomes_client.get(f"/Contacts({made['Id']})").json()["value"][0]
    assert body["New"]["LastUpdateDate"] == shown["LastUpdateDate"]
    assert ploomes_sim.deliveries.wait_idle()
    assert ploomes_sim.deliveries.status()["delivered"] == 1


def test_delete_and_create_fire_their_own_webhooks(
        ploomes_client: TestClient, receiver: Receiver) -> None:
    register(ploomes_client, receiver.url("/created"), action=1)
    register(ploomes_client, receiver.url("/deleted"), action=3)
    made = contact(ploomes_client)
    assert ploomes_client.delete(f"/Contacts({made['Id']})").status_code == 200
    (created,) = receiver.wait_for(1, "/created")
    (deleted,) = receiver.wait_for(1, "/deleted")
    assert created.json["Action"] == "Create" and created.json["Old"] is None
    assert created.json["New"]["Id"] == made["Id"]
    assert deleted.json["Action"] == "Delete" and deleted.json["New"] is None
    assert deleted.json["Old"]["Name"] == "Padaria São João"


def test_admin_writes_as_a_person_fire_too(ploomes_client: TestClient,
                                           receiver: Receiver) -> None:
    register(ploomes_client, receiver.url(), action=1)
    r = ploomes_client.post("/_sandbox/Contacts", json={"Name": "Mercado Bom Preço"})
    assert r.status_code == 201
    (hit,) = receiver.wait_for(1)
    assert hit.json["New"]["Name"] == "Mercado Bom Preço"


def test_a_won_deal_fires_update_and_win(ploomes_client: TestClient, receiver: Receiver) -> None:
    register(ploomes_client, receiver.url("/update"), entity=2, action=2)
    register(ploomes_client, receiver.url("/win"), entity=2, action=4)
    deal = ploomes_client.post("/Deals", json={"Title": "Pão", "StatusId": 1}).json()["value"][0]
    ploomes_client.patch(f"/Deals({deal['Id']})", json={"Amount": 10})
    ploomes_client.patch(f"/Deals({deal['Id']})", json={"StatusId": 2})
    receiver.wait_for(2, "/update")
    (win,) = receiver.wait_for(1, "/win")
    assert win.json["Action"] == "Win" and win.json["ActionId"] == 4
    assert win.json["Old"]["StatusId"] == 1 and win.json["New"]["StatusId"] == 2


def test_inactive_webhook_does_not_fire(ploomes_client: TestClient, ploomes_sim: PloomesSim,
                                        receiver: Receiver) -> None:
    hook = register(ploomes_client, receiver.url(), action=1)
    ploomes_client.patch(f"/Webhooks({hook['Id']})", json={"Active": False})
    contact(ploomes_client)
    assert ploomes_sim.deliveries.pending() == 0 and receiver.received() == []


def test_non_2xx_is_retried_until_it_succeeds(ploomes_client: TestClient,
                                              ploomes_sim: PloomesSim, receiver: Receiver) -> None:
    register(ploomes_client, receiver.url(), action=1)
    receiver.script["/hook"] = [500, 500]
    contact(ploomes_client)
    hits = receiver.wait_for(3)
    assert ploomes_sim.deliveries.wait_idle()
    assert len({h.body for h in hits}) == 1  # the same bytes each time
    status = ploomes_sim.deliveries.status()
    assert (status["attempts"], status["retried"], status["delivered"]) == (3, 2, 1)
    assert status["pending"] == 0 and status["dead_letters"] == []
    assert len(receiver.received()) == 3


def test_a_timeout_is_retried_and_the_receiver_sees_it_twice(
        ploomes_client: TestClient, ploomes_sim: PloomesSim, receiver: Receiver) -> None:
    ploomes_client.post("/_sandbox/faults", json={"webhook_timeout_s": 0.2})
    register(ploomes_client, receiver.url(), action=1)
    receiver.pauses["/hook"] = [0.6]
    contact(ploomes_client)
    first, second = receiver.wait_for(2)
    assert ploomes_sim.deliveries.wait_idle()
    assert first.body == second.body  # at least once: the late answer counted as a failure
    status = ploomes_sim.deliveries.status()
    assert (status["retried"], status["delivered"], status["dead_lettered"]) == (1, 1, 0)


def test_exhausted_retries_go_to_the_dead_letters(
        ploomes_client: TestClient, ploomes_sim: PloomesSim, receiver: Receiver) -> None:
    ploomes_client.post("/_sandbox/faults", json={"webhook_max_tries": 2})
    register(ploomes_client, receiver.url(), action=1)
    receiver.script["/hook"] = [503, 503, 503]
    contact(ploomes_client)
    receiver.wait_for(2)
    assert ploomes_sim.deliveries.wait_idle()
    status = ploomes_client.get("/_sandbox/deliveries").json()
    assert status["dead_lettered"] == 1 and status["delivered"] == 0
    (letter,) = status["dead_letters"]
    assert letter["attempts"] == 2 and letter["last_error"] == "HTTP 503"
    assert letter["url"] == receiver.url() and letter["body"]["ValidationKey"] == "***"
    assert "k-123" not in str(status)
    assert len(receiver.received()) == 2
    cleared = ploomes_client.delete("/_sandbox/deliveries").json()
    assert cleared["dead_letters"] == [] and cleared["dead_lettered"] == 0


def test_duplicate_knob_sends_identical_bodies_twice(
        ploomes_client: TestClient, ploomes_sim: PloomesSim, receiver: Receiver) -> None:
    ploomes_client.post("/_sandbox/faults", json={"webhook_duplicate_rate": 0.5})
    register(ploomes_client, receiver.url(), action=1)
    for i in range(12):
        contact(ploomes_client, Name=f"Cliente {i}")
    assert ploomes_sim.deliveries.wait_idle()
    hits = receiver.received()
    names = [h.json["New"]["Name"] for h in hits]
    twice = {n for n in names if names.count(n) == 2}
    assert 12 < len(hits) < 24 and len(set(names)) == 12
    for name in twice:
        assert len({h.body for h in hits if h.json["New"]["Name"] == name}) == 1


def test_reorder_knob_swaps_neighbours(ploomes_client: TestClient, ploomes_sim: PloomesSim,
                                       receiver: Receiver) -> None:
    ploomes_client.post("/_sandbox/faults", json={"webhook_reorder": 1.0})
    register(ploomes_client, receiver.url(), action=1)
    for i in range(5):
        contact(ploomes_client, Name=f"Cliente {i}")
    assert ploomes_sim.deliveries.wait_idle()
    names = [h.json["New"]["Name"] for h in receiver.received()]
    # pairs swap; the fifth had no neighbour and went alone after the hold
    assert names == ["Cliente 1", "Cliente 0", "Cliente 3", "Cliente 2", "Cliente 4"]


def test_without_webhooks_nothing_runs(ploomes_client: TestClient,
                                       ploomes_sim: PloomesSim) -> None:
    made = contact(ploomes_client)
    ploomes_client.patch(f"/Contacts({made['Id']})", json={"Email": "x@example.com"})
    ploomes_client.delete(f"/Contacts({made['Id']})")
    assert all(t.listener is None for t in ploomes_sim.db.tables.values())
    assert ploomes_sim.deliveries.status() == {"delivered": 0, "retried": 0, "dead_lettered": 0,
                                               "attempts": 0, "pending": 0, "dead_letters": []}
    assert ploomes_sim.deliveries._thread is None


def test_reset_forgets_webhooks(ploomes_client: TestClient, ploomes_sim: PloomesSim) -> None:
    register(ploomes_client, "http://127.0.0.1:9/a")
    assert ploomes_sim.db["Contacts"].listener is not None
    ploomes_client.post("/_sandbox/reset")
    assert ploomes_client.get("/Webhooks").json()["value"] == []
    assert ploomes_sim.db["Contacts"].listener is None
