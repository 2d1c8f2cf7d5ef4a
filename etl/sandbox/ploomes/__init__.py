"""A faithful simulator of the Ploomes CRM API (reference Part A, checklist Part D).

OData-style REST: ``User-Key`` header auth; collections ``/Contacts``, ``/Products``,
``/Deals``, ``/Orders``, ``/Users``, ``/Cities``, ``/States`` (also served at the vendor's own
``/Cities@Countries@States``), lookups ``/Contacts@Status``, ``/Contacts@Types``,
``/Orders@Stages``, ``/Deals@Status``, the field metadata ``/Fields`` (a few seeded custom
fields, ``Dynamic eq true``), and ``/Self``. Lists take ``$filter``, ``$orderby``,
``$top``, ``$skip``, ``$select`` and ``$expand`` and answer
``{"@odata.context": ..., "value": [...]}``; ``/X(id)`` takes GET, PATCH and DELETE; POST to a
collection creates. POST, PATCH and GET-by-id answer the same envelope with one record.

Records are stored natively (``Table.data`` without ``Id`` / ``CreateDate`` /
``LastUpdateDate``); :meth:`PloomesSim.render` adds those, formatted
``YYYY-MM-DDTHH:MM:SS.fff-03:00`` from the aware-UTC row timestamps.

Unconfirmed vendor behaviour ([U] in the reference) is a knob, default first:

* ``$top`` above the cap is silently capped at :data:`MAX_TOP` (300), or at ``Faults.page_cap``;
  ``$top`` omitted serves :data:`DEFAULT_TOP` (300) records.
* ``@odata.nextLink`` on full pages: ``Faults.next_link`` (off).
* 429 carries ``Retry-After`` (seconds): ``PloomesSim.retry_after_header`` (on).
* Error bodies are ``{"error": {"code": ..., "message": ...}}``; the 429 body is free-form.
* Datetime literals without an offset are read as Brasília time.
* A contact's ``Register``, ``CNPJ`` and ``CPF`` carry one document: a write of any of them (or
  of ``TypeId``) sets ``Register`` and, by ``TypeId``, ``CNPJ`` (1) or ``CPF`` (2) to its digits
  and clears the other: ``Faults.tax_id_in_step`` (on). Off, each field keeps what was written.

Fault knobs (``core.Faults``) apply to vendor routes only, never to ``/_sandbox``. A dropped
connection sends the response head and then aborts: uvicorn closes the socket (the client
sees a protocol error), and Starlette's ``TestClient`` raises :class:`DroppedConnection`, an
``httpx.RemoteProtocolError``. A dropped read is not processed; a dropped write *is* applied
before the connection drops (the answer is lost, the hard case for a client). Dropped requests
are counted with status 0.

Webhooks (reference A9): ``/Webhooks`` registers, lists, changes and deletes them and
``/Webhooks@Actions`` lists the action ids; every create, update and delete of a watched
record, through the API or the admin API, is delivered to the matching webhooks' URLs
(``hooks``, delivered by ``etl.sandbox.webhooks``).

Modules: ``schema`` (fields, lookups, navigation), ``validation`` (writes and documents),
``sim`` (the account's state and rendering), ``listing`` (query options over collections),
``hooks`` (webhook registration checks and payloads), ``app`` (auth, limits, faults and the
routes).
"""

from __future__ import annotations

from etl.sandbox.core import DroppedConnection
from etl.sandbox.ploomes.app import create_app
from etl.sandbox.ploomes.schema import DEFAULT_TOP, MAX_TOP
from etl.sandbox.ploomes.sim import PloomesSim, format_instant
from etl.sandbox.ploomes.validation import BadRequest

__all__ = ["DEFAULT_TOP", "MAX_TOP", "BadRequest", "DroppedConnection", "PloomesSim",
           "create_app", "format_instant"]
