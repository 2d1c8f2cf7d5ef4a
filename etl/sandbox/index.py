"""Equality indexes over one field of a table's records: which rows may hold a value.

An index answers with a superset of the rows whose field equals a literal, in the sense of the
OData filter (a string literal matches string values only; a number matches numbers, ``1`` and
``1.0`` alike). Rows whose value is of another kind are always returned too, because comparing
them may raise where a full scan would: a caller that evaluates its filter on the rows returned,
in id order, sees exactly the matches and errors a scan of every row would. ``None`` values never
equal a non-null literal and are left out.

The table keeps its indexes current through ``insert``/``update``/``delete``; a record's
``data`` changed in place, behind the table's back, is not seen by them.
"""

from __future__ import annotations

import math
from typing import Any

#: The value kinds the index keys by; any other kind of value is a "stray" (always a candidate).
_KEYED = (str, int, float)


def _keyed(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isnan(value)  # NaN equals nothing, itself included
    return isinstance(value, _KEYED) and not isinstance(value, bool)


class FieldIndex:
    """The rows of one table by the value of one top-level field of their ``data``."""

    def __init__(self, name: str, default: Any = None) -> None:
        self.name = name
        self.default = default  # what a record without a value is read as (None: nothing)
        self.by_value: dict[Any, set[int]] = {}
        self.strings: set[int] = set()  # rows holding a string
        self.numbers: set[int] = set()  # rows holding a number
        self.strays: set[int] = set()  # rows holding any other non-null value

    def _value(self, data: dict[str, Any]) -> Any:
        value = data.get(self.name)
        return self.default if self.default is not None and not value else value

    def add(self, rid: int, data: dict[str, Any]) -> None:
        value = self._value(data)
        if value is None:
            return
        if _keyed(value):
            self.by_value.setdefault(value, set()).add(rid)
            (self.strings if isinstance(value, str) else self.numbers).add(rid)
        else:
            self.strays.add(rid)

    def remove(self, rid: int, data: dict[str, Any]) -> None:
        value = self._value(data)
        if value is None:
            return
        if _keyed(value):
            ids = self.by_value.get(value)
            if ids is not None:
                ids.discard(rid)
                if not ids:
                    del self.by_value[value]
            (self.strings if isinstance(value, str) else self.numbers).discard(rid)
        else:
            self.strays.discard(rid)

    def equal(self, literal: Any) -> set[int] | None:
        """Rows whose value may equal ``literal`` under ``eq`` (None: not answerable here)."""
        if not _keyed(literal):
            return None
        other_kind = self.numbers if isinstance(literal, str) else self.strings
        return self.by_value.get(literal, set()) | other_kind | self.strays

    def exactly(self, literal: Any) -> set[int] | None:
        """Rows whose value equals ``literal`` and is of its kind: ``ne`` is false there and
        cannot raise (None: not answerable here)."""
        if not _keyed(literal):
            return None
        return set(self.by_value.get(literal, ()))  # a number never keys a string, nor back

    def valued(self) -> set[int]:
        """Rows with a value: ``eq null`` is false there."""
        return self.strings | self.numbers | self.strays

    def among(self, literals: list[Any]) -> set[int] | None:
        """Rows whose value may equal one of ``literals`` under ``in`` (no kind errors there:
        values of another kind simply differ, but non-keyed values are kept as candidates)."""
        if not all(_keyed(v) for v in literals):
            return None
        out = set(self.strays)
        for literal in literals:
            out |= self.by_value.get(literal, set())
        return out
