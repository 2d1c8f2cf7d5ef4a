from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from etl.engine.resolve import resolve_pair, values_for_create
from etl.mapping import load_mappings

MAPS = load_mappings(Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie")
C = MAPS["customers"]
BASE = {"name": "A", "email": "a@x.com", "legal_name": "A Ltda", "tax_id": "11444777000161"}


def v(**kw: str) -> dict[str, str | None]:
    return {**BASE, **kw}


@pytest.mark.parametrize(
    ("policy_crm", "crm", "erp", "snap_crm", "snap_erp", "writes_crm", "writes_erp", "conflict"),
    [
        # one side changed a shared field: it flows to the other
        ("erp_wins", v(email="b@x.com"), v(), v(), v(), {}, {"email": "b@x.com"}, []),
        ("erp_wins", v(), v(email="c@x.com"), v(), v(), {"email": "c@x.com"}, {}, []),
        # an ERP-owned field changed in the CRM never flows to the ERP: the ERP's value is put back
        ("erp_wins", v(legal_name="B SA"), v(), v(), v(), {"legal_name": "A Ltda"}, {}, []),
        # ... while the ERP's change flows to the CRM
        ("erp_wins", v(), v(legal_name="C SA"), v(), v(), {"legal_name": "C SA"}, {}, []),
        # both changed the same field: the policy decides
        ("erp_wins", v(name="B"), v(name="C"), v(), v(), {"name": "C"}, {}, []),
        ("crm_wins", v(name="B"), v(name="C"), v(), v(), {}, {"name": "B"}, []),
        ("manual", v(name="B"), v(name="C"), v(), v(), {}, {}, ["name"]),
        # both changed different fields: both flow
        ("manual", v(name="B"), v(email="c@x.com"), v(), v(), {"email": "c@x.com"},
         {"name": "B"}, []),
        # both changed an owned field: the owner wins even under 'manual'
        ("manual", v(legal_name="B"), v(legal_name="C"), v(), v(), {"legal_name": "C"}, {}, []),
        # the same change on both sides: nothing to do
        ("manual", v(name="Z"), v(name="Z"), v(), v(), {}, {}, []),
    ],
)
def test_resolve_pair(policy_crm, crm, erp, snap_crm, snap_erp, writes_crm, writes_erp,
                      conflict) -> None:
    m = C.model_copy(update={"conflict": policy_crm})
    d = resolve_pair(m, {"crm": crm, "erp": erp}, {"crm": snap_crm, "erp": snap_erp})
    assert d.writes["crm"] == writes_crm
    assert d.writes["erp"] == writes_erp
    assert d.conflict == conflict


def test_newest_wins_uses_updated_at() -> None:
    m = C.model_copy(update={"conflict": "newest_wins"})
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    d = resolve_pair(m, {"crm": v(name="B"), "erp": v(name="C")}, {"crm": v(), "erp": v()},
                     updated={"crm": t2, "erp": t1})
    assert d.writes == {"crm": {}, "erp": {"name": "B"}}


def test_first_match_takes_owner_then_on_match_policy() -> None:
    d = resolve_pair(C, {"crm": v(name="b", legal_name="X"), "erp": v(name="B")},
                     {"crm": None, "erp": None}, first_match=True)
    assert d.writes["crm"] == {"name": "B", "legal_name": "A Ltda"}
    assert d.writes["erp"] == {}


def test_values_for_create_include_owned_fields_to_seed_the_new_record() -> None:
    values = values_for_create(C, "crm", v(phones=None))
    assert values["tax_id"] == "11444777000161" and values["legal_name"] == "A Ltda"
    assert "phones" not in values
