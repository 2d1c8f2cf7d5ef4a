"""BottleCRM facts a spec cannot say as data.

* Custom field values live in a record's ``custom_fields`` object, one key per field the org
  defines. A write naming a key the org has not defined answers success and drops the value
  (the tax id would be lost without a word), so the keys a write sends are checked first
  against the org's definitions (``/api/custom-fields/``, read once per run and model).
"""

from __future__ import annotations

import threading
from typing import Any

from etl.connectors.auth import Call
from etl.connectors.base import Record
from etl.connectors.hooks import hook
from etl.connectors.spec import NoPaging
from etl.errors import RecordError

#: BottleCRM's model name for custom field definitions, by native collection.
TARGET_MODEL = {"accounts": "Account", "opportunities": "Opportunity", "contacts": "Contact"}


def _defined(conn: Any, model: str) -> frozenset[str]:
    with conn._hook_lock:
        once = conn.hook_state.setdefault("bottlecrm_custom_lock", threading.Lock())
        known: dict[str, frozenset[str]] = conn.hook_state.setdefault("bottlecrm_custom", {})
    with once:  # one read per model, however many writes ask at once
        if model not in known:
            call = Call("GET", "/api/custom-fields/", params={"target_model": model})
            found = [d for page in conn._pages(call, NoPaging(type="none"), "definitions", "")
                     for d in page]
            known[model] = frozenset(str(d["key"]) for d in found
                                     if d.get("is_active", True) and d.get("key"))
        return known[model]


@hook("bottlecrm_custom_fields")
def custom_fields(conn: Any, entity: str, payload: Record) -> Record:
    """Refuse a write whose ``custom_fields`` name a key the org has not defined."""
    sent = payload.get("custom_fields")
    if not isinstance(sent, dict) or not sent:
        return payload
    model = TARGET_MODEL.get(conn.spec.entities[entity].collection, "")
    defined = _defined(conn, model)
    unknown = sorted(set(sent) - defined)
    if unknown:
        raise RecordError(
            f"BottleCRM would drop custom field {', '.join(map(repr, unknown))}: the org defines "
            f"no such {model} field (defined: {', '.join(sorted(defined)) or 'none'})",
            field=f"custom_fields.{unknown[0]}")
    return payload
