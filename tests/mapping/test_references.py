"""The ``reference`` and ``tag_list`` transforms over in-memory reference lists, and the pure
rules of the pilot scope."""

from __future__ import annotations

import json

import pytest

from etl.engine.scope import holds, widened
from etl.errors import RecordError
from etl.mapping import MapContext
from etl.mapping.models import Scope, Side
from etl.mapping.transforms import REGISTRY


class Lists:
    """Reference lists held in memory (the engine reads them from the connectors)."""

    def __init__(self, rows: dict[tuple[Side, str], dict[str, str]]) -> None:
        self.data = rows
        self.created: list[tuple[Side, str, str]] = []

    def rows(self, side: Side, name: str, *, fresh: bool = False) -> dict[str, str]:
        return self.data.setdefault((side, name), {})

    def borrowed(self, side: Side, name: str) -> bool:
        return False

    def create(self, side: Side, name: str, value: str) -> str:
        key = str(100 + len(self.created))
        self.created.append((side, name, value))
        self.data[(side, name)][key] = value
        return key

    def describe(self, side: Side, name: str) -> str:
        return {"users": "Ploomes user", "sellers": "Omie seller (vendedor)",
                "tags": "Ploomes tag"}[name]


def ctx(side: Side, lists: Lists) -> MapContext:
    return MapContext(side=side, refs=lists)


LISTS = {("crm", "users"): {"1": "Ana.Souza@Example.com.br", "2": "bia@example.com.br"},
         ("erp", "sellers"): {"7": "ANA.SOUZA@EXAMPLE.COM.BR"},
         ("crm", "tags"): {"5": "VIP"}}
REF, TAGS = REGISTRY["reference"], REGISTRY["tag_list"]
USERS = {"table": "users", "fold": "lower", "as": "int"}
SELLERS = {"table": "sellers", "fold": "lower", "as": "int", "none": 0}


def test_reference_reads_the_email_and_writes_the_other_sides_id() -> None:
    lists = Lists({k: dict(v) for k, v in LISTS.items()})
    value = REF.read(1, USERS, ctx("crm", lists))
    assert value == "ana.souza@example.com.br"
    assert REF.write(value, SELLERS, ctx("erp", lists)) == 7
    assert REF.read(0, SELLERS, ctx("erp", lists)) is None
    assert REF.write(None, SELLERS, ctx("erp", lists)) == 0
    assert REF.write(None, USERS, ctx("crm", lists)) is None


def test_an_owner_without_a_seller_names_the_email_and_the_system() -> None:
    lists = Lists({k: dict(v) for k, v in LISTS.items()})
    value = REF.read(2, USERS, ctx("crm", lists))
    with pytest.raises(RecordError, match=r"bia@example.com.br has no Omie seller \(vendedor\)"):
        REF.write(value, SELLERS, ctx("erp", lists))
    with pytest.raises(RecordError, match="99 is not a Ploomes user"):
        REF.read(99, USERS, ctx("crm", lists))


def test_without_lists_the_reference_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="reference list"):
        REF.read(1, USERS, MapContext())


def test_tags_are_sorted_distinct_names_and_missing_ones_are_created() -> None:
    lists = Lists({k: dict(v) for k, v in LISTS.items()})
    inline = {"name": "tag"}
    by_id = {"table": "tags", "key": "TagId", "as": "int"}
    erp = TAGS.read([{"tag": "Zeta "}, {"tag": "VIP"}, {"tag": "VIP"}], inline, ctx("erp", lists))
    assert json.loads(erp or "") == ["VIP", "Zeta"]
    assert TAGS.read([{"TagId": 5}], by_id, ctx("crm", lists)) == '["VIP"]'
    assert TAGS.read([], inline, ctx("erp", lists)) is None
    assert TAGS.write(erp, by_id, ctx("crm", lists)) == [{"TagId": 5}, {"TagId": 100}]
    assert lists.created == [("crm", "tags", "Zeta")]
    assert TAGS.write(erp, inline, ctx("erp", lists)) == [{"tag": "VIP"}, {"tag": "Zeta"}]
    assert TAGS.write(None, inline, ctx("erp", lists)) == []


@pytest.mark.parametrize(("value", "inside"), [
    ("ana@x.com", True), ("ANA@X.COM", True), ("bia@x.com", False), (None, False),
    ('["Atacado", "Pilot"]', True), ('["Atacado"]', False),
])
def test_scope_holds(value: str | None, inside: bool) -> None:
    assert holds(Scope(field="owner", values=["Ana@x.com", "pilot"]), value) is inside


@pytest.mark.parametrize(("before", "now", "wider"), [
    (None, Scope(field="owner", values=["a@x.com"]), False),  # everything -> a part
    ({"field": "owner", "values": ["a@x.com"]}, None, True),  # a part -> everything
    ({"field": "owner", "values": ["a@x.com"]}, Scope(field="owner", values=["A@x.com"]), False),
    ({"field": "owner", "values": ["a@x.com"]},
     Scope(field="owner", values=["a@x.com", "b@x.com"]), True),
    ({"field": "owner", "values": ["a@x.com", "b@x.com"]},
     Scope(field="owner", values=["b@x.com"]), False),
    ({"field": "owner", "values": ["a@x.com"]}, Scope(field="tags", values=["a@x.com"]), True),
])
def test_scope_widened(before: dict | None, now: Scope | None, wider: bool) -> None:
    assert widened(before, now) is wider
