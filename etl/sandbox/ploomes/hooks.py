"""Ploomes webhooks (reference A9): ``/Webhooks`` registered, listed, changed and deleted through
the API, and the payload each watched write delivers.

* A webhook record has ``Id``, ``EntityId``, ``SecondaryEntityId``, ``ActionId``, ``Name``,
  ``CallbackUrl``, ``ValidationKey``, ``CreatorId``, ``CreateDate``, ``Active``,
  ``UserWebhook``; it is kept in the ``Webhooks`` table, so ``GET /Webhooks`` takes the same
  query options as any collection. ``/Webhooks@Actions`` lists the action ids.
* Entities that can be watched: 1 Contacts, 2 Deals, 4 Orders, 10 Products (reference A1);
  actions 1 Create, 2 Update, 3 Delete, and for Deals 4 Win and 5 Lose (ids 1 and 3 are
  unconfirmed [U]). A deal whose ``StatusId`` becomes 2 (won) or 3 (lost) fires the Win or Lose
  webhooks as well as the Update ones.
* The payload: ``{Action, EntityId, ActionId, WebhookId, AccountId, ValidationKey, New, Old}``
  (the envelope beyond ``Action``/``New``/``Old`` is unconfirmed [U]); ``New``/``Old`` are the
  record as ``GET /X(id)?$expand=OtherProperties`` gives it, except that ``OtherProperties`` is
  a map FieldKey -> value (the value property of the field's type), as the vendor sends it.
* Every write fires, whoever makes it: the integration's own API key too (as on the vendor).
"""

from __future__ import annotations

from typing import Any

import httpx

from etl.sandbox.ploomes.custom import ENTITY_OF, FIELDS, VALUE_BY_TYPE
from etl.sandbox.ploomes.schema import WEBHOOK_ACTIONS
from etl.sandbox.ploomes.validation import BadRequest
from etl.sandbox.tables import Row

ACCOUNT_ID = 1
ACTION_NAMES = {a["Id"]: a["Name"] for a in WEBHOOK_ACTIONS}
TABLE_OF = {entity: table for table, entity in ENTITY_OF.items()}
DEAL_OUTCOMES = {2: 4, 3: 5}  # Deals StatusId won / lost -> action Win / Lose
_VALUE_OF_KEY = {f["Key"]: VALUE_BY_TYPE[f["TypeId"]] for f in FIELDS if f["Dynamic"]}
_WRITABLE = {"EntityId": int, "ActionId": int, "CallbackUrl": str, "ValidationKey": str,
             "Name": str, "Active": bool, "SecondaryEntityId": int}
_READ_ONLY = {"Id", "CreatorId", "CreateDate", "UserWebhook"}


def check(body: Any, current: dict[str, Any] | None = None, *, creator: int = 0
          ) -> dict[str, Any]:
    """The fields of a webhook POST (``current`` None) or PATCH, checked; raises BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in _READ_ONLY:
            continue
        kind = _WRITABLE.get(name)
        if kind is None:
            raise BadRequest(f"The property '{name}' does not exist on type 'Webhooks'. Valid: "
                             f"{sorted(_WRITABLE)}")
        if value is not None and (not isinstance(value, kind) or
                                  (kind is int and isinstance(value, bool))):
            raise BadRequest(f"Webhooks: field '{name}' must be {kind.__name__}, got {value!r}")
        out[name] = value
    merged = {**(current or {}), **out}
    for name in ("EntityId", "ActionId", "CallbackUrl"):
        if merged.get(name) in (None, ""):
            raise BadRequest(f"Webhooks: field '{name}' is required")
    entity, action = merged["EntityId"], merged["ActionId"]
    if entity not in TABLE_OF:
        raise BadRequest(f"Webhooks: EntityId {entity} cannot be watched; valid: "
                         + ", ".join(f"{e} ({t})" for e, t in sorted(TABLE_OF.items())))
    if action not in ACTION_NAMES:
        raise BadRequest(f"Webhooks: ActionId {action} does not exist; valid: "
                         + ", ".join(f"{a} ({n})" for a, n in ACTION_NAMES.items()))
    if action in DEAL_OUTCOMES.values() and TABLE_OF[entity] != "Deals":
        raise BadRequest(f"Webhooks: ActionId {action} ({ACTION_NAMES[action]}) applies to "
                         "Deals (EntityId 2) only")
    url = merged["CallbackUrl"]
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest(f"Webhooks: CallbackUrl {url!r} is not an http(s) URL")
    if current is None:
        out.setdefault("Active", True)
        out.update(CreatorId=creator, UserWebhook=False)
        out.setdefault("SecondaryEntityId", None)
        out.setdefault("Name", None)
        out.setdefault("ValidationKey", None)
    return out


def watched_tables(webhooks: list[Row]) -> set[str]:
    return {TABLE_OF[w.data["EntityId"]] for w in webhooks
            if w.data.get("Active") and w.data.get("EntityId") in TABLE_OF}


def actions_of(table: str, old: Row | None, new: Row | None) -> list[int]:
    """The action ids a write fires: Create, Update or Delete, and a deal's Win or Lose."""
    if old is None:
        return [1]
    if new is None:
        return [3]
    out = [2]
    status = new.data.get("StatusId")
    if table == "Deals" and status in DEAL_OUTCOMES and old.data.get("StatusId") != status:
        out.append(DEAL_OUTCOMES[status])
    return out


def as_sent(record: dict[str, Any]) -> dict[str, Any]:
    """A rendered record with ``OtherProperties`` as the FieldKey -> value map of payloads."""
    items = record.get("OtherProperties")
    if isinstance(items, list):
        record["OtherProperties"] = {
            item["FieldKey"]: item.get(_VALUE_OF_KEY.get(item["FieldKey"], "StringValue"))
            for item in items if isinstance(item, dict) and item.get("FieldKey")}
    return record


def payload(hook: Row, action: int, new: dict[str, Any] | None,
            old: dict[str, Any] | None) -> dict[str, Any]:
    return {"Action": ACTION_NAMES[action], "EntityId": hook.data["EntityId"],
            "ActionId": action, "WebhookId": hook.id, "AccountId": ACCOUNT_ID,
            "ValidationKey": hook.data.get("ValidationKey"), "New": new, "Old": old}
