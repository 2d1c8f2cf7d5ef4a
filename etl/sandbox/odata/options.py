"""``$orderby``, ``$select`` and ``$expand``: small enough to parse here; ordering puts
``null`` first, as the vendor's SQL Server does ascending."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from etl.sandbox.odata.filter import FilterError, Path, to_instant

T = TypeVar("T")



@dataclass(frozen=True)
class OrderKey:
    path: Path
    descending: bool = False


def parse_orderby(text: str) -> list[OrderKey]:
    """``"LastUpdateDate desc,Id"`` -> keys; raises :class:`FilterError` when malformed."""
    keys: list[OrderKey] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise FilterError(f"invalid $orderby item {part.strip()!r}")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise FilterError(f"invalid $orderby direction {words[1]!r}; use asc or desc")
        keys.append(OrderKey(tuple(words[0].split("/")), direction == "desc"))
    return keys


def nulls_first(value: Callable[[T], Any]) -> Callable[[T], tuple[bool, Any]]:
    """A sort key over ``value`` that orders ``None`` first (as SQL Server does ascending)."""

    def key(item: T) -> tuple[bool, Any]:
        v = value(item)
        if v is None:
            return (False, 0)
        if isinstance(v, date) and not isinstance(v, datetime):
            v = to_instant(v)
        return (True, v)

    return key


def sort_records(
    items: list[T], keys: list[OrderKey], key_for: Callable[[Path], Callable[[T], Any]]
) -> list[T]:
    """Stable multi-key sort. ``key_for(path)`` gives the sort key function of one path (see
    :func:`nulls_first`)."""
    out = list(items)
    fns = [key_for(k.path) for k in keys]
    try:
        if len({k.descending for k in keys}) == 1:  # one pass with a composite key
            if len(fns) == 1:
                out.sort(key=fns[0], reverse=keys[0].descending)
            else:
                out.sort(key=lambda item: tuple(f(item) for f in fns),
                         reverse=keys[0].descending)
        else:
            for key, fn in reversed(list(zip(keys, fns, strict=True))):
                out.sort(key=fn, reverse=key.descending)
    except TypeError as exc:
        raise FilterError("cannot order by these fields: mixed value types") from exc
    return out


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (``Owner($select=Id,Name),City``)."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FilterError(f"unbalanced parentheses in {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if depth != 0:
        raise FilterError(f"unbalanced parentheses in {text!r}")
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def parse_expand(text: str) -> list[str]:
    """Navigation names of ``$expand``; nested options in parentheses are accepted and ignored."""
    return [p.split("(", 1)[0].strip() for p in split_top_level(text)]


def parse_select(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]
