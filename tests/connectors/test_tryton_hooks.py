"""The Tryton hooks: one2many fields as Tryton's write commands, a sale's lines as the fewest
commands against its current ones; hooks that ask for the write get it."""

from __future__ import annotations

from typing import Any

import pytest

from etl.connectors.base import WriteOp
from etl.connectors.hooks import HOOKS, WITH_OP, _load, before_write, hook
from etl.connectors.hooks.tryton import commands, line_commands


@pytest.mark.parametrize(("payload", "sent"), [
    ({"name": "Acme", "country": 1, "categories": [3, 4], "lines": []},
     {"name": "Acme", "country": 1, "categories": [3, 4], "lines": []}),  # no records: as is
    ({"addresses": [{"city": "Gent"}, {"city": "Brugge"}]},
     {"addresses": [["create", [{"city": "Gent"}, {"city": "Brugge"}]]]}),
    ({"addresses": [{"id": 7, "__name__": "party.address", "rec_name": "x", "city": "Gent"},
                    {"city": "Brugge"}]},
     {"addresses": [["write", [7], {"city": "Gent"}], ["create", [{"city": "Brugge"}]]]}),
    ({"lines": [{"product": 2, "taxes": [{"tax": 1}]}]},  # nested lists too
     {"lines": [["create", [{"product": 2, "taxes": [["create", [{"tax": 1}]]]}]]]}),
    ({"products": [{}]}, {"products": [["create", [{}]]]}),
])
def test_lists_of_records_become_commands(payload: dict[str, Any],
                                          sent: dict[str, Any]) -> None:
    assert commands(payload) == sent


def test_the_hook_is_registered_by_name() -> None:
    _load()
    assert HOOKS["tryton_one2many"](None, "customers", {"a": [{"b": 1}]}) == {
        "a": [["create", [{"b": 1}]]]}


def _read(line_id: int, template: int, quantity: str, price: str) -> dict[str, Any]:
    """A sale line as the connector reads it (product with its template, tagged decimals)."""
    return {"id": line_id, "type": "line", "product": {"id": template + 100, "template": template},
            "quantity": float(quantity),
            "unit_price": {"__class__": "Decimal", "decimal": price}}


def test_an_updated_sale_gets_the_fewest_line_commands() -> None:
    current = [_read(1, 10, "2", "19.9000"), _read(2, 20, "1", "5.0000"),
               _read(3, 30, "4", "1.0000"), {"id": 4, "type": "comment", "product": None}]
    wanted = [{"template": 10, "product": 110, "quantity": 3.0, "unit_price": 19.9},  # changed
              {"template": 20, "product": 120, "quantity": 1.0, "unit_price": 5.0},  # same
              {"template": 40, "product": 140, "quantity": 1.0, "unit_price": 2.5}]  # new
    assert line_commands(current, wanted) == [
        ["write", [1], {"quantity": 3.0}],
        ["create", [{"product": 140, "quantity": 1.0, "unit_price": 2.5}]],
        ["delete", [3]]]  # template 30 left the deal; the comment line is not ponte's


def test_lines_of_one_template_pair_by_position() -> None:
    current = [_read(1, 10, "1", "2.00"), _read(2, 10, "5", "2.00"), _read(3, 10, "7", "2.00")]
    wanted = [{"template": 10, "product": 110, "quantity": 1.0, "unit_price": 2.0},
              {"template": 10, "product": 110, "quantity": 6.0, "unit_price": 2.5}]
    assert line_commands(current, wanted) == [
        ["write", [2], {"quantity": 6.0, "unit_price": 2.5}], ["delete", [3]]]
    assert line_commands(current[:1], wanted[:1]) == []


def test_a_before_write_hook_gets_the_write_only_when_it_asks() -> None:
    _load()
    seen: list[Any] = []

    @hook("test_plain")
    def plain(conn: Any, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "plain": True}

    @hook("test_with_op", with_op=True)
    def with_op(conn: Any, entity: str, payload: dict[str, Any], op: WriteOp) -> dict[str, Any]:
        seen.append((op.action, op.key))
        return payload

    op = WriteOp("update", {"a": 1}, key="7")
    try:
        assert before_write("test_plain", None, "orders", {"a": 1}, op) == {"a": 1, "plain": True}
        assert before_write("test_with_op", None, "orders", {"a": 1}, op) == {"a": 1}
        assert seen == [("update", "7")]
        assert "tryton_sale" in WITH_OP and "tryton_one2many" not in WITH_OP
    finally:
        for name in ("test_plain", "test_with_op"):
            HOOKS.pop(name)
            WITH_OP.discard(name)
