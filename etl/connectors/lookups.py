"""The values a lookup (``read_by_keys``, ``find_by``) asks for, as the spec compares them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from etl.connectors.spec import ByValues


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def norm(spec: ByValues, value: Any) -> str:
    """A value as ``spec`` compares it: digits only with ``normalize: digits``, else as text."""
    return digits(value) if spec.normalize == "digits" else str(value)


def wanted(spec: ByValues, values: Iterable[Any], *, ordered: bool) -> list[str]:
    """The distinct, non-empty values to send, those not matching ``value_pattern`` left out;
    ``ordered`` sorts them (numbers first) so the same values make the same requests."""
    out = list(dict.fromkeys(norm(spec, v) for v in values if v is not None and str(v) != ""))
    out = [v for v in out if v != "" and (
        spec.value_pattern is None or re.fullmatch(spec.value_pattern, v))]
    if ordered:
        out.sort(key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))
    return out


def sends_no_value(spec: ByValues) -> bool:
    """True when the request names no value anywhere: one listing serves every value."""
    return spec.param is None and spec.filter is None and spec.body_path is None and (
        "{value" not in repr((spec.path, spec.params, spec.body)))
