"""Named transforms: how a native value becomes a canonical string (``read``) and back
(``write``). Canonical values are ``str`` or ``None``; ``read`` raises :class:`RecordError`
with a precise reason for values that cannot be synced.

A transform gets the raw native value (or a list of values when the field has ``paths``), the
``args`` from the mapping file, and the :class:`~etl.mapping.apply.MapContext` (for links).

A transform that maps only part of a native list (``phone_list``: the first ``limit`` numbers)
also has a ``merge``: given what ``write`` produced and the target's current list, it returns the
list to send, with the items the mapping does not own kept as they were (see
:func:`etl.mapping.apply.merge_kept`).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from stdnum.br import cnpj as std_cnpj
from stdnum.br import cpf as std_cpf

from etl.errors import RecordError

if TYPE_CHECKING:
    from etl.mapping.apply import MapContext

Raw = Any
Canon = str | None

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _empty(value: Raw) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def items_of(raw: Raw, noun: str) -> list[Any] | None:
    """A list field's items; ``None`` when it is empty; a :class:`RecordError` naming ``noun``
    (phones, tags, lines) when it is not a list."""
    if raw in (None, ""):
        return None
    if not isinstance(raw, list):
        raise RecordError(f"expected a list of {noun}, got {type(raw).__name__}")
    return raw


def _text(value: Raw, what: str = "text") -> Canon:
    if _empty(value):
        return None
    if not isinstance(value, str):
        raise RecordError(f"expected {what}, got {type(value).__name__} {value!r}")
    if _CONTROL.search(value):
        raise RecordError(f"contains control characters: {value!r}")
    return _SPACES.sub(" ", unicodedata.normalize("NFC", value)).strip() or None


def _digits(value: Raw) -> Canon:
    if _empty(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"expected digits, got {type(value).__name__} {value!r}")
    return re.sub(r"\D", "", str(value)) or None


@dataclass(frozen=True)
class Transform:
    name: str
    read: Callable[[Raw, dict[str, Any], MapContext], Canon]
    write: Callable[[Canon, dict[str, Any], MapContext], Raw]
    doc: str
    required: tuple[str, ...] = ()  # args a mapping must give (checked when it is loaded)
    # (written, current, args) -> the list to send: the written items in place of the ones the
    # mapping owns, the target's other items kept; None: the written value replaces the target's
    merge: Callable[[Raw, Raw, dict[str, Any]], Raw] | None = None


REGISTRY: dict[str, Transform] = {}


class _Codec(Protocol):
    """A class registered as a transform: a static ``read`` and ``write``."""

    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon: ...

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw: ...


_CodecT = TypeVar("_CodecT", bound=_Codec)


def register(name: str, doc: str, *, required: tuple[str, ...] = ()
             ) -> Callable[[type[_CodecT]], type[_CodecT]]:
    def deco(cls: type[_CodecT]) -> type[_CodecT]:
        REGISTRY[name] = Transform(name, cls.read, cls.write, doc, required,
                                   getattr(cls, "merge", None))
        return cls

    return deco


@register("text", "trimmed text, inner whitespace collapsed, NFC; empty = missing; args: case "
          "(upper), prefix (put before the value read, taken off the value written)")
class _Text:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        value = _text(raw)
        if value is not None and args.get("case") == "upper":
            value = value.upper()
        return None if value is None else f"{args.get('prefix', '')}{value}"

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        return "" if value is None else value.removeprefix(str(args.get("prefix", "")))


@register("email", "trimmed, lower-case e-mail; an address without '@' and a domain is invalid")
class _Email:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        value = _text(raw, "an e-mail address")
        if value is None:
            return None
        value = value.lower()
        if not _EMAIL.match(value):
            raise RecordError(f"{value!r} is not a valid e-mail address")
        return value

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        return _Text.write(value, args, ctx)


@register("digits", "digits only (CEPs, codes); written as a string")
class _Digits:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        value = _digits(raw)
        if value is not None and args.get("pad"):
            value = value.zfill(int(args["pad"]))
        return value

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        if args.get("as") == "int":
            return int(value) if value else None
        return value or ""


@functools.lru_cache(maxsize=8192)
def _valid_tax_id(digits: str) -> bool:
    """The check digits of a CNPJ (14 digits) or CPF (11): a run reads each document twice,
    from its source and from the record written, and the check is ~40 µs."""
    return bool((std_cnpj if len(digits) == 14 else std_cpf).is_valid(digits))


@register("tax_id", "CNPJ (14 digits) or CPF (11 digits) with valid check digits, digits only; "
          "args.write_format: digits | punctuated")
class _TaxId:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        value = _digits(raw)
        if value is None:
            return None
        if len(value) == 14:
            if not _valid_tax_id(value):
                raise RecordError(f"CNPJ {value} has invalid check digits")
        elif len(value) == 11:
            if not _valid_tax_id(value):
                raise RecordError(f"CPF {value} has invalid check digits")
        else:
            raise RecordError(f"{value!r} has {len(value)} digits; a CNPJ has 14 and a CPF 11")
        return value

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        if not value:
            return ""
        if args.get("write_format") == "punctuated":
            return std_cnpj.format(value) if len(value) == 14 else std_cpf.format(value)
        return value


@register("decimal", "a number as a fixed-point string (args.places, default 2); written as a "
          "number; a class-tagged decimal ({\"__class__\": \"Decimal\", \"decimal\": \"19.90\"}) "
          "is read as its text")
class _Decimal:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        if isinstance(raw, dict) and raw.get("__class__") == "Decimal":
            raw = raw.get("decimal")
        if _empty(raw):
            return None
        if isinstance(raw, bool):
            raise RecordError(f"expected a number, got {raw!r}")
        try:
            number = Decimal(str(raw).replace(",", ".") if isinstance(raw, str) else str(raw))
        except InvalidOperation:
            raise RecordError(f"expected a number, got {raw!r}") from None
        if not number.is_finite():
            raise RecordError(f"expected a finite number, got {raw!r}")
        places = int(args.get("places", 2))
        return str(number.quantize(Decimal(1).scaleb(-places)))

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        return float(value) if value is not None else 0


@register("int", "an integer as a string; written as a number")
class _Int:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        if _empty(raw):
            return None
        try:
            return str(int(str(raw)))
        except ValueError:
            raise RecordError(f"expected an integer, got {raw!r}") from None

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        return int(value) if value is not None else None


def _map_key(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@register("value_map", "native values <-> canonical values through args.map (native: canonical); "
          "write the native keys with their native type (1, true, \"S\")")
class _ValueMap:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        mapping = {_map_key(k): str(v) for k, v in args["map"].items()}
        if _empty(raw):
            return args.get("default")
        key = _map_key(raw)
        if key not in mapping:
            raise RecordError(f"value {raw!r} is not one of {sorted(mapping)}")
        return mapping[key]

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        for native, canon in args["map"].items():
            if str(canon) == value:
                return native
        raise RecordError(f"no native value maps to {value!r}")


@register("date", "a calendar date as YYYY-MM-DD; args.format is the native strftime format "
          "(ISO datetimes with offsets are read in their own local date; written as local "
          "midnight with args.offset, default +00:00)")
class _Date:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        if _empty(raw):
            return None
        if not isinstance(raw, str):
            raise RecordError(f"expected a date, got {raw!r}")
        fmt = args.get("format", "iso")
        try:
            if fmt == "iso":
                return datetime.fromisoformat(raw).date().isoformat()
            return datetime.strptime(raw.strip(), fmt).date().isoformat()
        except ValueError:
            raise RecordError(f"{raw!r} is not a date in the format {fmt}") from None

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        if value is None:
            return ""
        d = date.fromisoformat(value)
        fmt = args.get("format", "iso")
        if fmt == "iso":
            return f"{d.isoformat()}T00:00:00{args.get('offset', '+00:00')}"
        return d.strftime(fmt)


@register("link", "the key of a linked record of args.entity; canonical = the CRM key")
class _Link:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        if _empty(raw) or raw == 0:
            return None
        return ctx.to_canonical(args["entity"], str(raw))

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        if value is None:
            return None
        native = ctx.from_canonical(args["entity"], value)
        return int(native) if args.get("as") == "int" else native


@register("lines", "order lines: a list of objects -> canonical JSON [[product, quantity, "
          "unit price], ...] sorted; args: product, quantity, price (dotted paths inside a line), "
          "product_entity, item_defaults, positive (quantities and prices must be > 0), write "
          "(paths written instead, when they differ from the ones read: {price: unit_price})")
class _Lines:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        from etl.mapping.apply import get_path

        raw = items_of(raw, "lines")
        if raw is None:
            return None
        lines = []
        for i, item in enumerate(raw, start=1):
            product = get_path(item, args["product"])
            if _empty(product) or product == 0:
                raise RecordError(f"line {i} has no product")
            try:
                product_key = ctx.to_canonical(args["product_entity"], str(product))
            except RecordError as exc:
                raise RecordError(f"line {i}: {exc}") from None
            qty = _Decimal.read(get_path(item, args["quantity"]), {"places": 4}, ctx)
            price = _Decimal.read(get_path(item, args["price"]), {"places": 2}, ctx)
            if args.get("positive", True):
                if qty is None or Decimal(qty) <= 0:
                    raise RecordError(f"line {i} (product {product}) has quantity {qty}; "
                                      "it must be greater than 0")
                if price is None or Decimal(price) <= 0:
                    raise RecordError(f"line {i} (product {product}) has unit price {price}; "
                                      "it must be greater than 0")
            lines.append([product_key, qty, price])
        if not lines:
            return None
        return json.dumps(sorted(lines), separators=(",", ":"))

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        from etl.mapping.apply import set_path

        out = []
        path = {**args, **args.get("write", {})}
        for n, (product, qty, price) in enumerate(json.loads(value) if value else [], start=1):
            item: dict[str, Any] = json.loads(json.dumps(args.get("item_defaults", {})))
            native = ctx.from_canonical(args["product_entity"], product)
            set_path(item, path["product"], int(native) if args.get("as") == "int" else native)
            set_path(item, path["quantity"], float(qty))
            set_path(item, path["price"], float(price))
            if args.get("number"):
                set_path(item, args["number"], n)
            out.append(item)
        return out


# the phone transforms live in their own module; importing it registers them
from etl.mapping import phones as _phones  # noqa: F401


def _options(args: dict[str, Any]) -> list[tuple[str, str]]:
    options = args.get("options")
    if options is None:  # a custom field resolves this from the system's options list
        raise RecordError(f"option field {args.get('field', '?')!r}: its options were not "
                          "read from the system (name it with 'custom:')")
    return [(str(i), str(n)) for i, n in options]


@register("option", "an option field's option by its name, the system's option id natively "
          "(a custom option field: its options are read from the system once per run)")
class _Option:
    @staticmethod
    def read(raw: Raw, args: dict[str, Any], ctx: MapContext) -> Canon:
        if _empty(raw):
            return None
        names = dict(_options(args))
        key = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
        if key not in names:
            raise RecordError(f"option field {args.get('field', '?')!r}: option id {raw!r} is "
                              f"not among its options ({', '.join(names.values())})")
        return names[key]

    @staticmethod
    def write(value: Canon, args: dict[str, Any], ctx: MapContext) -> Raw:
        if value is None:
            return None
        options = _options(args)
        folded = " ".join(unicodedata.normalize("NFC", value).casefold().split())
        for key, name in options:
            if " ".join(unicodedata.normalize("NFC", name).casefold().split()) == folded:
                return int(key) if key.isdigit() else key
        names = [n for _k, n in options]
        near = difflib.get_close_matches(value, names, n=3, cutoff=0.5)
        raise RecordError(
            f"option field {args.get('field', '?')!r} has no option named {value!r}"
            + (f"; nearest: {', '.join(repr(n) for n in near)}" if near else "")
            + f" (its options: {', '.join(repr(n) for n in names) or 'none'})")
