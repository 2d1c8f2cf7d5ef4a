"""Values a spec names in braces, instants as a system writes them, dotted paths into answers."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from etl.connectors.spec import TimeFormat


class Missing(Exception):
    """A template names a value that is not set: the parameter (or body field) is left out."""


def dig(value: Any, path: str) -> Any:
    """``a.b.0.c`` in nested dicts/lists; ``None`` when any step is absent. ``""`` = ``value``."""
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(
                part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def first_field(path: str) -> str:
    """The field a path or template names first (``{info.dAlt} {info.hAlt}`` -> info.dAlt)."""
    return path.split("{", 1)[1].split("}", 1)[0] if "{" in path else path


def dig_all(value: Any, path: str) -> list[Any]:
    """Like :func:`dig`, but ``lines[].write_date`` collects the field of every list item."""
    head, many, rest = path.partition("[]")
    if not many:
        return [dig(value, path)]
    items = dig(value, head)
    return [v for item in items or () for v in dig_all(item, rest.removeprefix("."))]


def put(target: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.0.b`` in ``target`` (the containers on the way must exist, lists included)."""
    parts = path.split(".")
    node: Any = target
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _floor(moment: datetime, precision_ms: int) -> datetime:
    step = timedelta(milliseconds=precision_ms)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (moment - epoch) // step * step


def floor_to(moment: datetime, precision_ms: int) -> datetime:
    return _floor(moment.astimezone(UTC), precision_ms)


def ceil_to(moment: datetime, precision_ms: int) -> datetime:
    low = floor_to(moment, precision_ms)
    return low if low == moment else low + timedelta(milliseconds=precision_ms)


def format_instant(moment: datetime, fmt: TimeFormat, pattern: str = "") -> str:
    """An aware instant as the system writes it (in its zone, at its precision)."""
    local = floor_to(moment, fmt.precision_ms).astimezone(ZoneInfo(fmt.zone))
    pattern = pattern or fmt.format
    if pattern == "epoch_s":
        return str(int(local.timestamp()))
    if pattern == "epoch_ms":
        return str(int(local.timestamp() * 1000))
    if pattern == "tagged":
        return json.dumps(tagged(local))
    if pattern in ("iso", "iso_offset"):
        spec = "milliseconds" if fmt.precision_ms < 1000 else "seconds"
        text = local.isoformat(timespec=spec)
        return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
    return local.strftime(pattern)


def parse_instant(text: object, fmt: TimeFormat) -> datetime | None:
    """An instant as the system wrote it -> aware UTC; ``None`` when it is not one."""
    if text is None or text == "" or isinstance(text, bool):
        return None
    if fmt.format == "tagged" and isinstance(text, dict):  # wall-clock fields in ``zone``
        if text.get("__class__") != "datetime":
            return None
        try:
            y, mo, d, h, mi, sec, us = (int(text.get(f) or 0) for f in _TAGGED_FIELDS)
            value = datetime(y, mo, d, h, mi, sec, us)
        except (TypeError, ValueError):
            return None
        return value.replace(tzinfo=ZoneInfo(fmt.zone)).astimezone(UTC)
    try:
        if fmt.format in ("epoch_s", "epoch_ms"):
            seconds = float(text) / (1000 if fmt.format == "epoch_ms" else 1)  # type: ignore[arg-type]
            return datetime.fromtimestamp(seconds, UTC)
        if not isinstance(text, str):
            return None
        value = (datetime.fromisoformat(text) if fmt.format in ("iso", "iso_offset")
                 else datetime.strptime(text, fmt.format))
    except (TypeError, ValueError, OverflowError):
        return None
    if value.tzinfo is None and fmt.format == "iso_offset":
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(fmt.zone))
    return value.astimezone(UTC)


_TAGGED_FIELDS = ("year", "month", "day", "hour", "minute", "second", "microsecond")


def tagged(moment: datetime) -> dict[str, Any]:
    """A wall-clock time in class-tagged JSON (JSON-RPC systems such as Tryton):
    ``{"__class__": "datetime", "year": ..., "microsecond": ...}``."""
    return {"__class__": "datetime", **{f: getattr(moment, f) for f in _TAGGED_FIELDS}}


def encode(value: str, how: str) -> str:
    """A filled parameter or header as the system wants it (``base64url``: of its text)."""
    assert how == "base64url"
    return base64.urlsafe_b64encode(value.encode()).decode()


class _Formatter(string.Formatter):
    def __init__(self, fmt: TimeFormat | None) -> None:
        self.fmt = fmt

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int):
            raise Missing(str(key))
        value = dig(kwargs, key) if "." in key else kwargs.get(key)
        if value is None:
            raise Missing(key)
        return value

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        return self.get_value(field_name, args, kwargs), field_name

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion == "i":  # ``{key!i}``: the value as an integer (a numeric id)
            return int(value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, datetime):
            return format_instant(value, self.fmt or TimeFormat(), format_spec)
        if format_spec == "json":  # JSON text: a list of values, a string quoted
            return json.dumps(value)
        if format_spec == "q":  # a quoted string literal, quotes doubled (OData, SQL-like)
            return "'" + str(value).replace("'", "''") + "'"
        return str(format(value, format_spec))


def compose(clauses: list[str], join: str) -> str:
    """Filter clauses joined, each parenthesised when there are several."""
    return join.join(c if len(clauses) == 1 else f"({c})" for c in clauses)


def render(template: Any, values: dict[str, Any], fmt: TimeFormat | None = None, *,
           drop: bool = False) -> Any:
    """``template`` with its placeholders filled; raises :class:`Missing` when one is unset.

    Dicts are rendered item by item, leaving out the items whose value is missing (lists too,
    with ``drop``); a string that is one placeholder alone keeps the value's type (``!i``:
    made an integer)."""
    if isinstance(template, dict):
        out = {}
        for k, v in template.items():
            try:
                out[k] = render(v, values, fmt)
            except Missing:
                continue
        return out
    if isinstance(template, list):
        out_list = []
        for v in template:
            try:
                out_list.append(render(v, values, fmt))
            except Missing:
                if not drop:
                    raise
        return out_list
    if not isinstance(template, str) or "{" not in template:
        return template
    formatter = _Formatter(fmt)
    parsed = list(formatter.parse(template))
    if (len(parsed) == 1 and parsed[0][0] == "" and parsed[0][1] and not parsed[0][2]
            and parsed[0][3] in (None, "i")):
        value = formatter.convert_field(formatter.get_value(parsed[0][1], (), values),
                                        parsed[0][3])
        if not isinstance(value, datetime):
            return value
    return formatter.vformat(template, (), values)


fill = render
