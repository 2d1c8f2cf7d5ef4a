"""The state of one simulated Ploomes account: reference tables populated, records rendered as
the API returns them, navigation properties resolved, writes validated."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from etl.sandbox import geo
from etl.sandbox.core import BRT, Simulator
from etl.sandbox.keys import SANDBOX_USER_KEY
from etl.sandbox.ploomes import custom, hooks
from etl.sandbox.ploomes.schema import (
    AUDITED,
    INTEGRATION_USER_ID,
    LOOKUPS,
    NAV,
    PERSON_USER_ID,
    SCHEMA,
    USERS,
    L,
)
from etl.sandbox.ploomes.validation import documents_in_step, validate
from etl.sandbox.tables import Row


def format_instant(value: datetime) -> str:
    """``2024-01-15T18:15:01.727-03:00``: Brasília offset, milliseconds (rounded down)."""
    return value.astimezone(BRT).isoformat(timespec="milliseconds")


class PloomesSim(Simulator):
    """State of one simulated Ploomes account."""

    tables = ["Contacts", "Products", "Deals", "Orders", "Users", "Tags", "Cities",  # noqa: RUF012
              "States", "Webhooks"]
    retry_after_header = True

    def __init__(self, *, user_key: str = SANDBOX_USER_KEY, rpm: int = 120,
                 db_path: str | None = None, seed: int = 0) -> None:
        super().__init__(rpm=rpm, db_path=db_path, seed=seed)
        self.user_key = user_key
        self._populate_reference()

    def _populate_reference(self) -> None:
        with self.db.lock:
            at = self.clock.now()
            if not len(self.db["States"]):
                for short, name in geo.STATES:
                    self.db["States"].insert({"Name": name, "Short": short, "CountryId": 76}, at)
            if not len(self.db["Cities"]):
                state_ids = {r.data["Short"]: r.id for r in self.db["States"]}
                for city in geo.CITIES:
                    self.db["Cities"].insert({"Name": city.name, "IBGECode": int(city.ibge),
                                              "StateId": state_ids[city.uf], "CountryId": 76}, at)
            if not len(self.db["Users"]):
                for user in USERS:
                    self.db["Users"].insert(dict(user), at)

    def reset(self) -> None:
        super().reset()
        self._populate_reference()

    # --- webhooks (``etl.sandbox.ploomes.hooks``) ---------------------------------------------

    def watched_tables(self) -> set[str]:
        return hooks.watched_tables(list(self.db["Webhooks"]))

    def on_change(self, table: str, old: Row | None, new: Row | None) -> None:
        """Queue the payload of this write for each active webhook on its entity and action."""
        entity = custom.ENTITY_OF.get(table)
        fired = hooks.actions_of(table, old, new)
        matching = [(w, a) for w in self.db["Webhooks"] for a in fired
                    if w.data.get("Active") and w.data.get("EntityId") == entity
                    and w.data.get("ActionId") == a]
        if not matching:
            return
        new_rec = hooks.as_sent(self.render(table, new)) if new is not None else None
        old_rec = hooks.as_sent(self.render(table, old)) if old is not None else None
        for hook, action in matching:
            self.deliveries.enqueue(hook.data["CallbackUrl"],
                                    hooks.payload(hook, action, new_rec, old_rec))

    # --- contacts' documents ------------------------------------------------------------------

    def in_step(self, table: str, current: dict[str, Any], changes: dict[str, Any]
                ) -> dict[str, Any]:
        """``changes`` to a record holding ``current``, with ``Register``/``CNPJ``/``CPF`` kept
        in step by ``TypeId`` when the ``tax_id_in_step`` knob is on (the fields written win,
        in that order; clearing them clears the document), and ``OtherProperties`` changing
        only the custom fields it names (:func:`etl.sandbox.ploomes.custom.merge`)."""
        if isinstance(changes.get("OtherProperties"), list):
            changes = {**changes, "OtherProperties": custom.merge(
                current.get("OtherProperties"), changes["OtherProperties"])}
        if table != "Contacts" or not self.faults.tax_id_in_step:
            return changes
        return documents_in_step(current, changes)

    def by_user(self, table: str, changes: dict[str, Any], user: int, *, create: bool
                ) -> dict[str, Any]:
        """``changes`` stamped with who made them: ``UpdaterId`` (and ``CreatorId`` on a create)
        of an audited table. A write through the API is the User-Key's user's
        (:data:`INTEGRATION_USER_ID`); an admin-API edit is a person's, or the user its body
        names."""
        if table not in AUDITED:
            return changes
        user = changes.get("UpdaterId") or user
        stamped = {**changes, "UpdaterId": user}
        if create:
            stamped["CreatorId"] = changes.get("CreatorId") or user
        return stamped

    def api_stamp(self, table: str, changes: dict[str, Any], *, create: bool) -> dict[str, Any]:
        """A vendor-API write's changes, stamped as the integration user's."""
        return self.by_user(table, changes, INTEGRATION_USER_ID, create=create)

    def ui_create(self, table: str, data: dict[str, Any]) -> Row:
        with self.db.lock:
            data = self.by_user(table, dict(data), PERSON_USER_ID, create=True)
            row = super().ui_create(table, self.in_step(table, {}, data))
            self.watch()
            return row

    def ui_update(self, table: str, rid: int, changes: dict[str, Any]) -> Row:
        with self.db.lock:
            row = self.db[table].get(rid)
            current = row.data if row is not None else {}
            changes = self.by_user(table, dict(changes), PERSON_USER_ID, create=False)
            row = super().ui_update(table, rid, self.in_step(table, current, changes))
            self.watch()
            return row

    def ui_delete(self, table: str, rid: int) -> bool:
        with self.db.lock:
            deleted = super().ui_delete(table, rid)
            self.watch()
            return deleted

    # --- rendering ----------------------------------------------------------------------------

    def render(self, table: str, row: Row) -> dict[str, Any]:
        data = row.data
        out: dict[str, Any] = {"Id": row.id}
        for name, kind in SCHEMA.get(table, {}).items():
            out[name] = [] if kind == L else None
        out.update(copy.deepcopy(data))
        if isinstance(out.get("OtherProperties"), list):
            out["OtherProperties"] = custom.render(table, row.id, out["OtherProperties"])
        if table == "Contacts":
            out["Phones"] = [
                {**p, "Id": p.get("Id") or row.id * 100 + i + 1, "ContactId": row.id}
                for i, p in enumerate(out.get("Phones") or [])
            ]
            out["Tags"] = [{**t, "Tag": self.navigate_tag(t.get("TagId"))}
                           for t in out.get("Tags") or [] if isinstance(t, dict)]
        elif table == "Orders":
            lines = []
            for i, line in enumerate(out.get("Products") or []):
                line = {**line, "Id": line.get("Id") or row.id * 1000 + i + 1, "OrderId": row.id}
                if line.get("ProductName") is None:
                    line["ProductName"] = self._field("Products", line.get("ProductId"), "Name")
                if line.get("Total") is None:
                    qty, price = line.get("Quantity") or 0, line.get("UnitPrice") or 0
                    line["Total"] = round(qty * price * (1 - (line.get("Discount") or 0) / 100), 2)
                lines.append(line)
            out["Products"] = lines
            if out.get("OrderNumber") is None:
                out["OrderNumber"] = row.id
            if out.get("Amount") is None:
                out["Amount"] = round(sum(x["Total"] for x in lines) - (out.get("Discount") or 0), 2)
        if table in ("Orders", "Deals") and out.get("ContactName") is None:
            out["ContactName"] = self._field("Contacts", out.get("ContactId"), "Name")
        if table in AUDITED:  # seeded records: a person's
            out["CreatorId"] = out.get("CreatorId") or PERSON_USER_ID
            out["UpdaterId"] = out.get("UpdaterId") or PERSON_USER_ID
        out["CreateDate"] = format_instant(row.created)
        if table != "Webhooks":
            out["LastUpdateDate"] = format_instant(row.updated)
        out.update(out.pop("_raw", None) or {})  # admin-stored malformed fields, sent verbatim
        return out

    def navigate_tag(self, tag_id: Any) -> dict[str, Any] | None:
        row = self.db["Tags"].get(tag_id) if isinstance(tag_id, int) else None
        return {"Id": row.id, "Name": row.data.get("Name")} if row else None

    def _field(self, table: str, rid: Any, name: str) -> Any:
        row = self.db[table].get(rid) if isinstance(rid, int) else None
        return row.data.get(name) if row else None

    def navigate(self, table: str, nav: str, fk_value: Any) -> dict[str, Any] | None:
        """The expanded navigation ``nav`` of a ``table`` record whose key field holds
        ``fk_value`` (None when unset or dangling)."""
        _, target, shown = NAV[table][nav]
        if fk_value is None:
            return None
        if target in LOOKUPS:
            return next((dict(x) for x in LOOKUPS[target] if x["Id"] == fk_value), None)
        row = self.db[target].get(fk_value) if isinstance(fk_value, int) else None
        if row is None:
            return None
        full = self.render(target, row)
        return {k: full.get(k) for k in shown} if shown else full

    def validate(self, table: str, body: Any, *, partial: bool) -> dict[str, Any]:
        """Native fields of a POST/PATCH body, type-checked; raises ``BadRequest``."""
        return validate(self.db, table, body, partial=partial)
