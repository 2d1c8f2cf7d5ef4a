"""Reference lists of the generic connector: small lists other records point into by id (the
CRM's users, the ERP's sellers, tags), named in a spec's ``references:``. A mapping's
``reference`` and ``tag_list`` transforms turn those ids into names or e-mails (the canonical
value) and back; the engine reads each list once per run and keeps it
(:mod:`etl.engine.references`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from loguru import logger

from etl.connectors.auth import Call
from etl.connectors.base import Record
from etl.connectors.errors import Outcome
from etl.connectors.paginators import record_lists
from etl.connectors.schema import CustomField, custom_fields_from, options_from
from etl.connectors.spec import ConnectorSpec, Myself, ReferenceList, Request
from etl.connectors.templates import dig
from etl.errors import ConfigError, RecordError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from etl.connectors.spec import Paginator


class References:
    """The reference half of :class:`etl.connectors.generic.GenericConnector`, and the
    custom fields the system lists (with the options of its option fields)."""

    spec: ConnectorSpec
    _me: dict[str, str | None]  # the user ponte is, by the request that said so

    if TYPE_CHECKING:  # provided by the connector this mixes into
        def _send(self, call: Call, kind: Literal["read", "write"], *,
                  attempts: int | None = None) -> tuple[Outcome, Any, Any]: ...
        def _call(self, req: Any, values: dict[str, Any], fmt: Any = None) -> Call: ...
        def _pages(self, call: Call, paginator: Paginator, records: str | list[str],
                   entity: str,
                   size: int | None = None, limit: int | None = None
                   ) -> Iterator[list[Record]]: ...

    def _reference(self, name: str) -> ReferenceList:
        ref = self.spec.references.get(name)
        if ref is None:
            raise ConfigError(f"{self.spec.title} has no reference list {name!r} (valid: "
                              f"{', '.join(sorted(self.spec.references)) or 'none'})")
        return ref

    def describe_reference(self, name: str) -> str:
        """``Omie seller (vendedor)``: the system and what one item is called."""
        ref = self._reference(name)
        return f"{self.spec.title} {ref.noun or name}"

    def reference(self, name: str) -> dict[str, str]:
        """The whole list: key -> value (as text; items without a key are left out).
        Raises ``SystemUnavailable``, ``ConfigError`` for an unknown list."""
        ref = self._reference(name)
        out: dict[str, str] = {}
        for page in self._pages(self._call(ref, {}), ref.paginator, ref.records, ""):
            for item in page:
                key, value = dig(item, ref.key), dig(item, ref.value)
                if key is not None and str(key) != "":
                    out[str(key)] = "" if value is None else str(value)
        return out

    def create_reference(self, name: str, value: str) -> str:
        """Add ``value`` to the list; its new key. A refusal is a :class:`RecordError` (the
        record that needed it is quarantined); ``ConfigError`` when the list has no create."""
        ref = self._reference(name)
        what = f"{self.describe_reference(name)} {value!r}"
        if ref.create is None:
            raise RecordError(f"{what} does not exist and {self.spec.title} cannot create it "
                              "through the API; create it there", kind="rejected")
        outcome, answer, _ = self._send(self._call(ref.create, {"value": value}), "write")
        if outcome.action != "ok":
            raise RecordError(f"{self.spec.title} refused to create {what}: {outcome.message}",
                              kind="rejected")
        record = dig(answer, ref.create.record_path)
        record = record[0] if isinstance(record, list) and record else record
        key = dig(record, ref.create.key_path or ref.key)
        if key is None or str(key) == "":
            found = [k for k, v in self.reference(name).items() if v == value]
            if not found:
                raise RecordError(f"{self.spec.title} accepted {what} but it is not in the list",
                                  kind="rejected")
            key = found[0]
        return str(key)

    def custom_fields(self, entity_id: int) -> list[CustomField]:
        """The custom fields the account defines for a system entity (``custom_fields``), with
        their labels and types: one listing (paged) per call, and one of the options when a
        field has an options table (``custom_fields.options``)."""
        spec = self.spec.custom_fields
        if spec is None:
            return []
        call = self._call(spec, {"entity_id": int(entity_id)})
        fields = [f for page in self._pages(call, spec.paginator, spec.records, "")
                  for f in page]
        options = None
        if spec.options is not None and spec.options_table and any(
                dig(f, spec.options_table) not in (None, "") for f in fields):
            listing = self._call(spec.options, {})
            options = options_from(spec.options, [o for page in self._pages(
                listing, spec.options.paginator, spec.options.records, "") for o in page])
        return custom_fields_from(spec, fields, options)

    def custom_field_keys(self, entity_id: int) -> set[str]:
        """The keys of :meth:`custom_fields`."""
        return {f.key for f in self.custom_fields(entity_id)}

    # --- who ponte is ------------------------------------------------------------------------

    def own_user(self, me: Myself) -> str | None:
        """The user ponte's credentials are, as the system records a record's last updater
        (read once per connector); None, with a warning, when the system does not say: its
        records are then listed as before."""
        if me.path in self._me:
            return self._me[me.path]
        outcome, answer, _ = self._send(self._call(Request(path=me.path, params={**me.params}), {}),
                                        "read")
        found: str | None = None
        if outcome.action == "ok":
            try:
                records = next(iter(record_lists(answer, me.records)), [])
                value = dig(records[0], me.value) if records else None
            except (LookupError, TypeError):
                value = None
            found = None if value in (None, "") else str(value)
        if found is None:
            logger.warning("{} {}: cannot tell which user ponte is (HTTP {}); records ponte "
                           "itself changed last are listed as before", self.spec.title, me.path,
                           outcome.status)
        self._me[me.path] = found  # a race reads it twice, to the same answer
        return found
