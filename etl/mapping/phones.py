"""Phone transforms: ``phone_list`` (a list of phone objects, of which the mapping owns the
first ``limit`` numbers) and ``phone_pairs`` (area-code and number fields in slots). Canonical
value: digits with the area code, comma-separated, in order."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from etl.mapping.transforms import Canon, Raw, items_of, register

if TYPE_CHECKING:
    from etl.mapping.apply import MapContext


def _phone_digits(number: str, args: dict[str, Any]) -> str:
    """Digits only; a leading ``args.country_code`` is dropped when the digits left are a
    national number (``args.national_digits``: their possible counts, default 8 or more)."""
    digits = re.sub(r"\D", "", number)
    code = str(args.get("country_code") or "")
    if code and digits.startswith(code):
        rest = digits[len(code):]
        lengths = args.get("national_digits")
        if (len(rest) in lengths) if isinstance(lengths, list) else len(rest) >= 8:
            digits = rest
    return digits


def _format_phone(digits: str, args: dict[str, Any]) -> str:
    """``(AREA) PREFIX-LINE`` with ``args.area_digits`` area digits; digits as they are when
    ``area_digits`` is not set or fewer than 7 digits follow the area code."""
    area = int(args.get("area_digits") or 0)
    code, rest = digits[:area], digits[area:]
    return f"({code}) {rest[:-4]}-{rest[-4:]}" if area and len(rest) >= 7 else digits


@register("phone_list", "a list of phone objects (args.number_key) -> up to args.limit numbers, "
          "digits with the area code, comma-separated; args.country_code (dropped when read), "
          "args.national_digits, args.area_digits (written as '(AREA) PREFIX-LINE'). The mapping "
          "owns the first args.limit items that carry a number: a write replaces their numbers "
          "(an item whose digits are unchanged is kept as it was) and keeps every other item of "
          "the target in place (keep_unmapped)")
class _PhoneList:
    @staticmethod
    def _owned(items: list[Any], args: dict[str, Any]) -> list[int]:
        """Positions of the items ``read`` takes: the first ``limit`` that carry a number."""
        key, limit = args.get("number_key", "PhoneNumber"), int(args.get("limit", 2))
        owned = [i for i, item in enumerate(items)
                 if isinstance(item, dict) and isinstance(item.get(key), str)
                 and _phone_digits(item[key], args)]
        return owned[:limit]

    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        raw = items_of(raw, "phones")
        if raw is None:
            return None
        key = args.get("number_key", "PhoneNumber")
        return ",".join(_phone_digits(raw[i][key], args)
                        for i in _PhoneList._owned(raw, args)) or None

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        key = args.get("number_key", "PhoneNumber")
        extra = args.get("item_defaults", {})
        return [{key: _format_phone(n, args), **extra}
                for n in (value.split(",") if value else [])]

    @staticmethod
    def merge(written: Raw, current: Raw, args: dict[str, Any]) -> Raw:
        """The owned items of ``current`` take the written numbers in order (their other
        attributes kept; unchanged digits keep the item as it was); owned items left over are
        dropped (a number cleared on the other side); written numbers beyond the owned items
        go right after the last owned one (or at the end), so they are read back as owned.
        Every other item stays where it was."""
        if not isinstance(current, list) or not current:
            return written
        key = args.get("number_key", "PhoneNumber")
        owned = _PhoneList._owned(current, args)
        new = list(written or [])
        out: list[Any] = []
        for i, item in enumerate(current):
            if i not in owned:
                out.append(item)
                continue
            if new:
                number = new.pop(0)[key]
                same = _phone_digits(item[key], args) == _phone_digits(number, args)
                out.append(item if same else {**item, key: number})
            if i == owned[-1]:
                out += new
                new = []
        return out + new


@register("phone_pairs", "paths alternate area-code and number fields (telefone1_ddd, "
          "telefone1_numero, ...) -> digits with the area code, comma-separated; "
          "args.area_digits (required), args.slots, args.country_code, args.national_digits",
          required=("area_digits",))
class _PhonePairs:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        numbers = []
        for area, number in zip(raw[0::2], raw[1::2], strict=True):
            digits = _phone_digits(f"{area or ''}{number or ''}", args)
            if digits:
                numbers.append(digits)
        return ",".join(numbers) or None

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        numbers = value.split(",") if value else []
        out: list[str] = []
        area = int(args["area_digits"])
        for i in range(int(args.get("slots", 2))):
            if i < len(numbers):
                digits = numbers[i]
                rest = digits[area:]
                out += [digits[:area], f"{rest[:-4]}-{rest[-4:]}" if len(rest) >= 7 else rest]
            else:
                out += ["", ""]
        return out
