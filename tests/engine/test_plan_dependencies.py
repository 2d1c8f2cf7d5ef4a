"""A plan on a fresh state: orders whose customer the same plan would create or match are
"would be created after its customer", never quarantined for a customer "not synced yet"."""

from __future__ import annotations

from pathlib import Path

from etl.render import changes_lines
from etl.state import Store
from tests.engine.conftest import make_world


def test_plan_before_the_first_sync_creates_orders_after_their_customers(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=200, products=50, orders=30)
    orders = {str(o.id): str(o.data["ContactId"]) for o in w.crm.db["Orders"]}
    report = w.sync(dry_run=True)
    o = report.entities["orders"]
    assert o.crm.quarantined == 0 and o.problems == []
    assert o.erp.created == len(orders) == 30
    creates = {c.source_key: c for c in o.changes if c.action == "create"}
    assert set(creates) == set(orders)
    for key, change in creates.items():
        customer = orders[key]
        assert change.note is not None and change.note.startswith(
            f"would be created after its customer: customers {customer} ("), change.note
        assert change.note.endswith(("(created in the erp by this plan)",
                                     "(matched in the erp by this plan)"))
    # both kinds occur in the default sandbox (30 % of the customers exist on both sides)
    assert {c.note.rsplit("(", 1)[1] for c in creates.values() if c.note} == {
        "created in the erp by this plan)", "matched in the erp by this plan)"}
    # the report says why, in JSON and on the terminal
    listed = report.as_dict(with_changes=True)["changes"]
    assert sum(1 for c in listed if c["entity"] == "orders" and
               c["note"].startswith("would be created after its customer")) == 30
    assert any(line.strip().startswith("(would be created after its customer: customers ")
               for line in changes_lines(report))
    with Store.open(w.settings.state_url) as store:  # a plan still writes nothing
        assert store.quarantine() == [] and store.count_snapshots("crm", "customers") == 0
    # and the sync that follows does what the plan said
    real = w.sync()
    assert real.entities["orders"].erp.created == 30
    assert real.entities["orders"].crm.quarantined == 0


def test_plan_still_quarantines_an_order_whose_customer_would_not_sync(tmp_path: Path) -> None:
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=30, products=10, orders=8)
    order = min(w.crm.db["Orders"], key=lambda r: r.id)
    contact = order.data["ContactId"]
    w.crm.ui_update("Contacts", contact, {"Register": "11.222.333/0001-00"})  # bad check digits
    report = w.sync(dry_run=True)
    o = report.entities["orders"]
    assert [(p.key, p.reason) for p in o.problems] == [
        (str(order.id), f"customers {contact} is not synced yet (check its quarantine)")]
    assert o.crm.quarantined == 1
