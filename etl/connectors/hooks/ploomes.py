"""Ploomes facts a spec cannot say as data.

* A contact's tax id is in ``Register`` (digits only) for what ponte writes, but the UI and
  other integrations fill ``CNPJ``/``CPF`` in either form: a search by ``Register`` also looks
  in those, digits-only and punctuated.
* Writes name the city by ``CityId`` and the state by ``StateId``; mappings speak of the IBGE
  code and the abbreviation (``City.IBGECode``, ``State.Short``): the ids are looked up (the
  cities of a whole batch in one request, the states once) and cached for the run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from stdnum.br import cnpj as std_cnpj
from stdnum.br import cpf as std_cpf

from etl.connectors.auth import Call
from etl.connectors.base import Record, WriteOp
from etl.connectors.hooks import hook
from etl.connectors.spec import KeysetPaging
from etl.errors import RecordError

DOCUMENT_FIELDS = ("CNPJ", "CPF")
CHUNK = 50
BY_ID = KeysetPaging(type="keyset", param="$filter", clause="Id gt {last_key}",
                     size_param="$top", key="Id", key_pattern=r"\d+")


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@hook("ploomes_document_clause")
def document_clause(field: str, value: str) -> str:
    """``Register eq '…'`` or the same document in ``CNPJ``/``CPF``, as typed or punctuated."""
    forms = [value]
    if value.isdigit() and len(value) in (11, 14):
        forms.append((std_cnpj if len(value) == 14 else std_cpf).format(value))
    clauses = [f"{field} eq {_quoted(value)}"]
    clauses += [f"{f} eq {_quoted(form)}" for f in DOCUMENT_FIELDS for form in dict.fromkeys(forms)]
    return " or ".join(clauses)


def _list(conn: Any, path: str, clause: str | None, limit: int | None = None) -> list[Record]:
    call = Call("GET", path, params={"$orderby": "Id asc"}, filters={"$filter": []},
                joins={"$filter": " and "})
    if clause:
        call.filters["$filter"].append(clause)
    return [r for page in conn._pages(call, BY_ID, "value", "", limit=limit) for r in page]


def _code(payload: Record) -> str | None:
    city = payload.get("City")
    code = city.get("IBGECode") if isinstance(city, dict) else city
    return None if code is None or code == "" else str(code).strip()


@hook("ploomes_prime_lookups")
def prime_lookups(conn: Any, entity: str, ops: Sequence[WriteOp]) -> None:
    """Before a batch's writes (which run in parallel): its cities, and the states once."""
    prime_cities(conn, ops)
    if any(op.payload.get("State") not in (None, "") for op in ops):
        _states(conn)


def prime_cities(conn: Any, ops: Sequence[WriteOp]) -> None:
    """Look up the cities ``ops`` name, ``CHUNK`` IBGE codes per request, once per run."""
    with conn._hook_lock:
        cities = conn.hook_state.setdefault("ploomes_cities", {})
        missing = sorted({c for op in ops if (c := _code(op.payload)) and c.isdigit()}
                         - set(cities))
    for i in range(0, len(missing), CHUNK):
        part = missing[i:i + CHUNK]
        found = _list(conn, "/Cities", " or ".join(f"IBGECode eq {int(c)}" for c in part),
                      limit=len(part))
        with conn._hook_lock:
            cities.update({str(c["IBGECode"]): int(c["Id"]) for c in found})


def _states(conn: Any) -> dict[str, int]:
    with conn._hook_lock:
        once = conn.hook_state.setdefault("ploomes_states_lock", threading.Lock())
    with once:  # one listing, however many writes ask at once
        if "ploomes_states" not in conn.hook_state:
            found = _list(conn, "/Cities@Countries@States", None)
            conn.hook_state["ploomes_states"] = {str(s["Short"]).upper(): int(s["Id"])
                                                 for s in found}
        return dict(conn.hook_state["ploomes_states"])


@hook("ploomes_city_state")
def city_state(conn: Any, entity: str, payload: Record) -> Record:
    """``City``/``State`` references -> ``CityId``/``StateId`` (``None`` clears them)."""
    out = dict(payload)
    if "City" in out:
        code = _code(out)
        out.pop("City")
        if code is not None:
            prime_cities(conn, [WriteOp("create", {"City": code})])
            with conn._hook_lock:
                city_id = conn.hook_state["ploomes_cities"].get(code)
            if city_id is None:
                raise RecordError(f"no Ploomes city has IBGE code {code!r}",
                                  field="City.IBGECode")
        out["CityId"] = None if code is None else city_id
    if "State" in out:
        state = out.pop("State")
        short = state.get("Short") if isinstance(state, dict) else state
        if short is None or short == "":
            out["StateId"] = None
        else:
            short = str(short).strip().upper()
            states = _states(conn)
            if short not in states:
                raise RecordError(f"no Ploomes state has the abbreviation {short!r}",
                                  field="State.Short")
            out["StateId"] = states[short]
    return out
