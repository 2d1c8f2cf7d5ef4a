"""A stored watermark ahead of the run's signpost (the state was edited, or the clock went
back) fails the entity loudly — naming entity, side, watermark and signpost — instead of
reading an empty window and saying "ok"; nothing is read or written for it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from etl.mapping.models import Side
from tests.engine.conftest import World


def set_mark(w: World, side: Side, ahead: timedelta) -> str:
    value = w.now() + ahead
    with w.store() as store:
        store.set_watermark("customers", side, value, now=w.now())
    return value.isoformat()


@pytest.mark.parametrize(("side", "ahead"), [
    ("crm", timedelta(days=4 * 365)),  # `watermark set --to 2030-01-01` of old
    ("erp", timedelta(hours=2)),  # this machine's clock went back two hours
])
def test_a_run_with_a_watermark_ahead_fails_and_touches_nothing(
        world: World, side: Side, ahead: timedelta) -> None:
    assert world.sync("customers").status == "ok"
    stored = set_mark(world, side, ahead)
    contact = next(iter(world.crm.db["Contacts"])).id
    world.crm.db["Contacts"].update(contact, {"Email": "novo@exemplo.com.br"}, world.crm.clock.now())
    writes = world.write_requests()
    for dry_run in (True, False):
        report = world.sync("customers", dry_run=dry_run)
        assert report.status == "failed"
        error = report.error or ""
        for text in (f"customers {side}: the stored watermark {stored}", "signpost",
                     f"ponte watermark set customers --side {side}",
                     f"ponte watermark reset customers --side {side}", "Nothing was read"):
            assert text in error, (text, error)
        c = report.entities["customers"]
        assert c.crm.read == c.erp.read == 0
    assert world.write_requests() == writes
    with world.store() as store:
        assert store.watermark("customers", side).isoformat() == stored  # left as it was
    # once fixed, the edit made meanwhile is read and carried over
    with world.store() as store:
        store.set_watermark("customers", side, None, now=world.now())
    fixed = world.sync("customers")
    assert fixed.status == "ok" and fixed.entities["customers"].erp.updated >= 1


def test_a_backfill_neither_reads_nor_needs_the_watermark(world: World) -> None:
    assert world.sync("customers").status == "ok"
    set_mark(world, "crm", timedelta(days=30))
    report = world.ponte().backfill("customers")
    assert report.status == "ok" and report.entities["customers"].crm.read > 0
