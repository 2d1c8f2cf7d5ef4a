"""The Tryton hook: one2many fields as Tryton's write commands."""

from __future__ import annotations

from typing import Any

import pytest

from etl.connectors.hooks import HOOKS, _load
from etl.connectors.hooks.tryton import commands


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
