"""What a bad setting's value looks like in an error: one line per pydantic error,
``VARIABLE='value': what is wrong``, in words an operator can act on (secrets masked)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from etl.settings import NESTED, PREFIX, _schedule_name, setting_names, shown

_PLAIN = {
    "int_parsing": "not a valid integer",
    "int_type": "not a valid integer",
    "int_from_float": "not a valid integer (it has decimals)",
    "float_parsing": "not a valid number",
    "float_type": "not a valid number",
    "bool_parsing": "not a valid boolean (use true or false)",
    "path_type": "not a valid path",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}


def _what(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"must be {_BOUNDS[kind]} {bound}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '?')}"
    if kind == "extra_forbidden":
        return "unknown setting"
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def describe_errors(exc: ValidationError, *, sources: Mapping[str, str] | None = None) -> list[str]:
    """One line per pydantic error: ``VARIABLE='value': what is wrong`` (secrets masked)."""
    secret_of = setting_names()
    lines = []
    for e in exc.errors():
        var = PREFIX + NESTED.join(str(p).upper() for p in e["loc"])
        # a name we cannot place is treated as a secret
        secret = secret_of.get(var, not _schedule_name(var))
        where = (sources or {}).get(var, "")
        value = "" if e["type"] == "missing" else f"={shown(e.get('input'), secret=secret)}"
        lines.append(f"{var}{value}{where}: {_what(e)}")
    return lines


__all__ = ["describe_errors"]
