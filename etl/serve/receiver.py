"""Receiving webhook calls: ``POST /webhooks/<path>``, read as its connector spec's
``webhooks:`` section says (:mod:`etl.connectors.spec_webhooks`), so nothing here knows which
vendor sent it.

A call is authenticated first (a missing secret: 401, a wrong one, or a side whose secret is
not configured: 403, with nothing more said), then stored in the state database before the
answer (an identical redelivery of one vendor event stores nothing). An event for a collection
or action the mappings do not cover is answered 200 and stored as ``ignored``; a ping is
answered 200 and not stored.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loguru import logger
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from etl.connectors.spec_webhooks import WebhookSpec
from etl.connectors.templates import dig
from etl.mapping import EntityMapping
from etl.mapping.models import SIDES, Side
from etl.settings import Settings
from etl.state import Store
from etl.state.events import EventIn

SYNCED = ("create", "update", "delete")
#: a webhook body larger than this is refused (413) unread: the vendors send one record
MAX_BODY_BYTES = 1024 * 1024


@dataclass
class Endpoint:
    """One side's webhook endpoint: its spec section, the secret its calls must carry (None:
    not configured, every call refused) and the mapping entity of each collection."""

    side: Side
    spec: WebhookSpec
    secret: str | None
    entities: dict[str, str] = field(default_factory=dict)


def endpoints(settings: Settings, mappings: Mapping[str, EntityMapping]) -> dict[str, Endpoint]:
    """The endpoints of the configured systems whose spec has a ``webhooks:`` section, by path
    segment; the collection -> entity resolution comes from the mappings."""
    out: dict[str, Endpoint] = {}
    for side in SIDES:
        conf = settings.crm if side == "crm" else settings.erp
        spec = conf.spec.webhooks
        if spec is None:
            continue
        entities = {m.systems[side].collection: name for name, m in mappings.items()
                    if side in m.systems}
        out[spec.path] = Endpoint(side, spec, expected_secret(settings, side, spec), entities)
    return out


def expected_secret(settings: Settings, side: Side, spec: WebhookSpec) -> str | None:
    """What the calls' secret must equal: the side's webhook key, or a credential."""
    conf = settings.crm if side == "crm" else settings.erp
    want = spec.auth.compare_with
    if want == "webhook_key":
        return conf.webhook_key.get_secret_value() if conf.webhook_key else None
    secret = conf.credentials.get(want.removeprefix("credentials."))
    return secret.get_secret_value() if secret is not None else None


def unconfigured(settings: Settings, found: Mapping[str, Endpoint]) -> list[str]:
    """Why each endpoint refuses every call (its secret is not set), for the start-up log."""
    out = []
    for path, ep in found.items():
        if ep.secret:
            continue
        var = (f"PONTE_{ep.side.upper()}__WEBHOOK_KEY" if ep.spec.auth.compare_with ==
               "webhook_key" else f"PONTE_{ep.side.upper()}__CREDENTIALS__"
               f"{ep.spec.auth.compare_with.removeprefix('credentials.').upper()}")
        out.append(f"/webhooks/{path}: {var} is not set; every call to it is refused (403)")
    return out


def authenticate(ep: Endpoint, body: Any, headers: Mapping[str, str]) -> int | None:
    """None when the call carries the right secret, else the HTTP status to answer."""
    auth = ep.spec.auth
    got = dig(body, auth.body_path) if auth.body_path and isinstance(body, dict) else None
    if got in (None, "") and auth.header:
        got = headers.get(auth.header)
    if ep.secret is None:
        return 403
    if got in (None, ""):
        return 401
    if not hmac.compare_digest(str(got).encode(), ep.secret.encode()):
        return 403
    return None


def without(body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of ``body`` without the values at ``paths`` (dotted)."""
    out = copy.deepcopy(body)
    for path in paths:
        *parents, last = path.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def parse(ep: Endpoint, body: dict[str, Any], query: Mapping[str, str]) -> EventIn:
    """The event a call carries: its identity, collection, action, entity and record key."""
    spec = ep.spec
    clean = without(body, [p for p in (spec.auth.body_path, *spec.drop) if p])
    if spec.topic is not None:
        topic = spec.topics.get(str(dig(body, spec.topic)))
        collection = topic.collection if topic else None
        action = topic.action if topic else "other"
    else:
        collection = query.get(spec.collection_param or "") or None
        action = spec.actions.get(str(dig(body, spec.action or "")), "other")
    path = spec.record_on_delete if action == "delete" and spec.record_on_delete else spec.record
    record = dig(body, path)
    key_path = spec.keys.get(collection or "")
    raw_key = dig(record, key_path) if key_path is not None and isinstance(record, dict) else None
    key = None if raw_key in (None, "") else str(raw_key)
    entity = ep.entities.get(collection or "")
    covered = entity is not None and action in SYNCED and key is not None
    ident = dig(body, spec.event_id) if spec.event_id else None
    if ident in (None, ""):
        canonical = json.dumps({"collection": collection, "body": clean}, sort_keys=True,
                               ensure_ascii=False, separators=(",", ":"), default=str)
        ident = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    return EventIn(ep.side, str(ident), collection, entity, key, action,
                   "pending" if covered else "ignored", clean)


class Receiver:
    """The ``POST /webhooks/{path}`` handler over one state store."""

    def __init__(self, store: Store, found: Mapping[str, Endpoint], *, debounce_s: float,
                 now: Any) -> None:
        self.store, self.found, self.debounce = store, dict(found), timedelta(seconds=debounce_s)
        self.now = now  # () -> aware datetime

    async def handle(self, request: Request) -> JSONResponse:
        ep = self.found.get(str(request.path_params.get("path", "")))
        if ep is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": "the body is too large"}, status_code=413)
        raw = b""
        async for part in request.stream():
            raw += part
            if len(raw) > MAX_BODY_BYTES:
                return JSONResponse({"error": "the body is too large"}, status_code=413)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if ep.spec.ping is not None and body == ep.spec.ping:
            return JSONResponse({"ok": True})
        refused = authenticate(ep, body, request.headers)
        if refused is not None:
            logger.warning("webhook call to /webhooks/{} refused ({})", ep.spec.path, refused)
            return JSONResponse({"error": "unauthorized" if refused == 401 else "forbidden"},
                                status_code=refused)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body is not a JSON object"}, status_code=400)
        event = parse(ep, body, request.query_params)
        stored = await run_in_threadpool(self.store_event, event)
        return JSONResponse({"ok": True, "stored": stored, "status": event.status})

    def store_event(self, event: EventIn) -> bool:
        now: datetime = self.now()
        stored = self.store.add_event(event, now=now, due_at=now + self.debounce)
        logger.bind(side=event.side, entity=event.entity, key=event.key).info(
            "webhook event {} {} {} {}: {}", event.side, event.collection, event.action,
            event.key, ("stored " + event.status) if stored else "a redelivery, nothing stored")
        return stored


__all__ = ["MAX_BODY_BYTES", "Endpoint", "Receiver", "authenticate", "endpoints", "expected_secret", "parse",
           "unconfigured", "without"]
