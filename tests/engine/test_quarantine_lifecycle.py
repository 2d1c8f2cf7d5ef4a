"""The quarantine's lifecycle, driven through the sandbox's admin API like a person in the
vendors' UIs: an entry leaves when its record syncs cleanly (and the metric drops), a retry that
fails again updates the entry, a dropped record stays ignored until it changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from etl import metrics, ops
from etl.state import QuarantineRow
from tests.engine.conftest import World, make_world

BAD_CNPJ = "11.222.333/0001-00"  # wrong check digits


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=30, products=10,
                       orders=8)
    world.sync()  # everything linked and snapshotted
    return world


@pytest.fixture
def crm_admin(w: World) -> TestClient:
    return w.clients()[0]


def edit(admin: TestClient, table: str, key: int, *, base: str = "", **fields: object) -> None:
    """Change a record through the simulator's admin API (``base``: the simulator's root when
    the client's base URL is below it, as Omie's ``/api/v1``)."""
    response = admin.patch(f"{base}/_sandbox/{table}/{key}", json=fields)
    assert response.status_code == 200, response.text


def entries(w: World) -> list[QuarantineRow]:
    with w.store() as store:
        return ops.quarantine(store)


def metric(w: World, entity: str) -> float:
    with w.store() as store:
        samples = metrics.collect(store, ["customers", "products", "orders"], now=w.now())
    return next(s.value for s in samples
                if s.name == "ponte_quarantine_records" and s.labels == {"entity": entity})


def test_an_entry_goes_when_its_record_syncs_cleanly(w: World, crm_admin: TestClient) -> None:
    contact = min(w.crm.db["Contacts"], key=lambda r: r.id)
    good = contact.data["Register"]
    edit(crm_admin, "Contacts", contact.id, Register=BAD_CNPJ)
    w.sync("customers")
    [entry] = entries(w)
    assert (entry.system, entry.key, entry.field) == ("crm", str(contact.id), "tax_id")
    assert metric(w, "customers") == 1
    edit(crm_admin, "Contacts", contact.id, Register=good)  # fixed back to the synced value
    report = w.sync("customers")
    assert report.status == "ok"
    assert entries(w) == []
    assert metric(w, "customers") == 0


def test_a_fixed_record_with_new_values_syncs_and_leaves(w: World,
                                                          crm_admin: TestClient) -> None:
    contact = min(w.crm.db["Contacts"], key=lambda r: r.id)
    edit(crm_admin, "Contacts", contact.id, Register=BAD_CNPJ, Email="novo@exemplo.com.br")
    w.sync("customers")
    assert [e.key for e in entries(w)] == [str(contact.id)]
    edit(crm_admin, "Contacts", contact.id, Register="11.444.777/0001-61")  # a valid one
    report = w.sync("customers")
    assert report.entities["customers"].crm.quarantined == 0
    assert entries(w) == [] and metric(w, "customers") == 0


def test_a_fixed_record_that_is_written_back_leaves(w: World, crm_admin: TestClient) -> None:
    """Fixed with another tax id: the ERP owns it, so the sync writes the ERP's back into this
    very record; it synced cleanly, so its entry goes."""
    contact = min(w.crm.db["Contacts"], key=lambda r: r.id)
    edit(crm_admin, "Contacts", contact.id, Register=BAD_CNPJ)
    w.sync("customers")
    assert [e.key for e in entries(w)] == [str(contact.id)]
    edit(crm_admin, "Contacts", contact.id, Register="11.444.777/0001-61")
    report = w.sync("customers")
    assert report.entities["customers"].crm.updated == 1 and report.status == "ok"
    assert entries(w) == [] and metric(w, "customers") == 0


def test_a_retry_that_fails_again_updates_the_entry(w: World, crm_admin: TestClient) -> None:
    contact = min(w.crm.db["Contacts"], key=lambda r: r.id)
    edit(crm_admin, "Contacts", contact.id, Register=BAD_CNPJ)
    w.sync("customers")
    [first] = entries(w)
    edit(crm_admin, "Contacts", contact.id, Register="123")  # still bad, another reason
    with w.store() as store:
        assert ops.quarantine_retry(store, first.id, now=w.now()) == 1
    w.sync("customers")
    [again] = entries(w)
    assert again.id == first.id and again.attempts == 2
    assert again.reason != first.reason and "123" in again.reason
    assert again.next_retry_at > first.next_retry_at and again.last_seen > first.last_seen


def test_a_retried_record_that_is_gone_says_so(w: World, crm_admin: TestClient) -> None:
    contact = min(w.crm.db["Contacts"], key=lambda r: r.id)
    edit(crm_admin, "Contacts", contact.id, Register=BAD_CNPJ)
    w.sync("customers")
    [first] = entries(w)
    assert crm_admin.delete(f"/_sandbox/Contacts/{contact.id}").status_code == 200
    with w.store() as store:
        ops.quarantine_retry(store, first.id, now=w.now())
    w.sync("customers")
    [again] = entries(w)
    assert again.attempts == 2 and again.next_retry_at > w.now()
    assert again.reason.startswith(f"customers crm {contact.id} was not found when retried")
    assert f"ponte quarantine drop {first.id}" in again.reason
    assert again.reason.endswith(first.reason)


# per side: the admin table, the tax-id field, a valid replacement tax id
SIDE_FACTS = {
    "crm": ("Contacts", "Register", "11.444.777/0001-61"),
    "erp": ("clientes", "cnpj_cpf", "45.723.174/0001-10"),
}


@pytest.mark.parametrize("side", list(SIDE_FACTS))
def test_a_dropped_record_is_ignored_until_it_changes(w: World, side: str) -> None:
    table, tax_field, valid = SIDE_FACTS[side]
    crm_admin, erp_admin = w.clients()
    admin, base = (crm_admin, "") if side == "crm" else (erp_admin, "http://omie.test")
    row = min(w.crm.db[table] if side == "crm" else w.erp.db[table], key=lambda r: r.id)

    def change(**fields: object) -> None:
        edit(admin, table, row.id, base=base, **fields)

    change(**{tax_field: BAD_CNPJ})
    w.sync("customers")
    [entry] = entries(w)
    assert (entry.system, entry.key) == (side, str(row.id))
    with w.store() as store:
        ops.quarantine_drop(store, entry.id)
    assert entries(w) == [] and metric(w, "customers") == 0
    # the next runs re-read it through the lookback (their windows still cover its change)
    for _ in range(2):
        report = w.sync("customers")
        counts = report.entities["customers"].side(side)
        assert counts.skipped == 1 and counts.read >= 1  # it was read and ignored ...
        assert counts.quarantined == 0  # ... not quarantined again
        assert report.status == "ok"
    assert entries(w) == []
    with w.store() as store:
        kept = store.quarantine_get(entry.id)
        assert kept is not None and (kept.kind, kept.attempts) == ("dropped", 1)
        with pytest.raises(ops.ConfigError, match="was dropped"):
            ops.quarantine_retry(store, entry.id, now=w.now())
    # edited (still bad): processed again, a fresh entry
    change(**{tax_field: "123"})
    w.sync("customers")
    [back] = entries(w)
    assert (back.system, back.key, back.kind, back.attempts) == (side, str(row.id), "invalid", 1)
    # dropped again, then fixed: processed, synced, the entry is gone
    with w.store() as store:
        ops.quarantine_drop(store, back.id)
    change(**{tax_field: valid})
    report = w.sync("customers")
    assert report.entities["customers"].side(side).quarantined == 0
    assert report.status == "ok"
    with w.store() as store:
        assert store.quarantine(dropped=True) == []
