"""A list field's write keeps the target's items the mapping does not own (pure parts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from etl.mapping import (
    MapContext,
    build_payload,
    kept_fields,
    load_mapping,
    load_mappings,
    merge_kept,
)
from etl.mapping.transforms import REGISTRY

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie"
ARGS = {"limit": 2, "country_code": "55", "national_digits": [10, 11], "area_digits": 2,
        "item_defaults": {"TypeId": 1, "CountryId": 76}}
PHONES = REGISTRY["phone_list"]
CTX = MapContext()


def item(number: str, **extra: Any) -> dict[str, Any]:
    return {"PhoneNumber": number, **extra}


def merged(value: str | None, current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert PHONES.merge is not None
    out: list[dict[str, Any]] = PHONES.merge(PHONES.write(value, ARGS, CTX), current, ARGS)
    return out


A, B, C = item("(11) 3456-7890", Id=1, TypeId=2), item("(11) 98765-4321", Id=2), \
    item("+55 21 2222-3333", Id=3, TypeId=3)
BLANK = item("", Id=9)


@pytest.mark.parametrize(("value", "current", "expected"), [
    # the owned items (the first two numbers) take the written numbers; the third stays
    ("1130001111,11987654321", [A, B, C],
     [item("(11) 3000-1111", Id=1, TypeId=2), B, C]),
    # unchanged digits keep the item exactly as it was, formatting included
    ("1134567890,11987654321", [A, B, C], [A, B, C]),
    # one number cleared on the other side: that owned item goes, the third moves up
    ("1134567890", [A, B, C], [A, C]),
    # nothing written: every owned item goes, the others stay
    (None, [A, B, C], [C]),
    # a blank item is not owned (read skips it): it stays where it was
    ("1130001111,11987654321", [BLANK, A, B, C],
     [BLANK, item("(11) 3000-1111", Id=1, TypeId=2), B, C]),
    # more written than owned: the new numbers come right after the last owned item
    ("1134567890,11987654321", [A, BLANK],
     [A, item("(11) 98765-4321", TypeId=1, CountryId=76), BLANK]),
    # an empty target: the written list as it is
    ("1134567890", [], [item("(11) 3456-7890", TypeId=1, CountryId=76)]),
])
def test_phone_list_merge(value: str | None, current: list[dict[str, Any]],
                          expected: list[dict[str, Any]]) -> None:
    assert merged(value, current) == expected


NUMBERS = st.sampled_from(["1134567890", "11987654321", "2122223333", "3133334444",
                           "4140041234", "51999998888"])
FORMATS = st.sampled_from(["({a}) {r}", "+55 {a} {r}", "{a}{r}"])


@st.composite
def phone_items(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 9)) == 0:
        return item("", Id=draw(st.integers(1, 99)))
    n, fmt = draw(NUMBERS), draw(FORMATS)
    return item(fmt.format(a=n[:2], r=n[2:]), Id=draw(st.integers(1, 99)),
                TypeId=draw(st.integers(1, 4)))


@given(current=st.lists(phone_items(), max_size=6),
       written=st.lists(NUMBERS, max_size=2))
def test_phone_list_merge_never_drops_an_item_it_does_not_own(
        current: list[dict[str, Any]], written: list[str]) -> None:
    value = ",".join(written) or None
    out = merged(value, current)
    read = PHONES.read(out, ARGS, CTX)
    read_numbers = read.split(",") if read else []
    # what was written is read back first, in order
    assert read_numbers[:len(written)] == written
    # every item the mapping did not own is still there, unchanged and in the same order
    owned = _owned_ids(current)
    kept = [x for x in current if id(x) not in owned]
    assert [x for x in out if any(x is y for y in kept)] == kept
    # a full write reads back exactly as written: the next run sees no change
    if len(written) == 2:
        assert read == value


def _owned_ids(items: list[dict[str, Any]]) -> list[int]:
    numbered = [x for x in items if re.sub(r"\D", "", x["PhoneNumber"])]
    return [id(x) for x in numbered[:2]]


def test_the_payload_for_the_crm_keeps_its_third_phone() -> None:
    m = load_mappings(MAPPINGS)["customers"]
    assert kept_fields(m, "crm", m.fields) == ["phones"]
    assert kept_fields(m, "erp", m.fields) == []  # slots: the mapping owns all of them
    payload = build_payload(m, "crm", {"phones": "1130001111,11987654321"}, CTX, create=False)
    out = merge_kept(m, "crm", payload, {"Phones": [A, B, C], "Name": "x"})
    assert out == {"Phones": [item("(11) 3000-1111", Id=1, TypeId=2), B, C]}
    assert PHONES.read(out["Phones"], ARGS, CTX) == "1130001111,11987654321"
    # a payload without the field is left as it is
    assert merge_kept(m, "crm", {"Name": "y"}, {"Phones": [A, B, C]}) == {"Name": "y"}


def test_keep_unmapped_false_replaces_the_whole_list(tmp_path: Path) -> None:
    doc = yaml.safe_load((MAPPINGS / "customers.yaml").read_text())
    doc["fields"]["phones"]["crm"]["keep_unmapped"] = False
    path = tmp_path / "customers.yaml"
    path.write_text(yaml.safe_dump(doc))
    m = load_mapping(path)
    assert kept_fields(m, "crm", m.fields) == []
