"""``ponte webhooks register`` and ``status``: ponte's callbacks in the systems that have an
API for them (the spec's ``webhooks.registration``), and what to set by hand in those that do
not (``webhooks.manual``).

One callback per mapped collection and action, at ``PONTE_SERVE__PUBLIC_URL/webhooks/<path>``
(plus the collection parameter), carrying the side's webhook key. Registering is idempotent: a
callback already there with the same key is left alone, one with another key is updated.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from etl.connectors.base import Connector
from etl.connectors.errors import Outcome
from etl.connectors.spec_webhooks import WebhookSpec
from etl.connectors.templates import dig
from etl.errors import ConfigError, EtlError
from etl.mapping import EntityMapping
from etl.mapping.models import SIDES, Side
from etl.serve.receiver import expected_secret
from etl.settings import Settings


@runtime_checkable
class Requests(Protocol):
    """A connector that sends requests outside its entities (the generic connector)."""

    def request(self, method: str, path: str, body: Any = None) -> tuple[Outcome, Any]: ...


@dataclass(frozen=True)
class Callback:
    """One callback: which collection and action, where it calls, and what was done."""

    side: str
    collection: str
    action: str
    url: str
    id: str | None = None
    state: str = ""  # created | updated | unchanged | registered (status)

    def as_dict(self) -> dict[str, Any]:
        return {"side": self.side, "collection": self.collection, "action": self.action,
                "url": self.url, "id": self.id, "state": self.state}


@dataclass(frozen=True)
class ManualSetup:
    """What to set by hand in a system without a registration API."""

    side: str
    system: str
    url: str
    topics: tuple[str, ...]
    where: str

    def as_dict(self) -> dict[str, Any]:
        return {"side": self.side, "system": self.system, "url": self.url,
                "topics": list(self.topics), "where": self.where}


@dataclass
class WebhookReport:
    """What ``register`` did (or ``status`` found), and the local event counts."""

    callbacks: list[Callback] = field(default_factory=list)
    manual: list[ManualSetup] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(1 for c in self.callbacks if c.state in ("created", "updated"))

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "callbacks": [c.as_dict() for c in self.callbacks],
                "manual": [m.as_dict() for m in self.manual], "events": self.events}


class Registrar:
    """Talks to one system's callback API through its connector (its auth, retries, rate)."""

    def __init__(self, side: Side, spec: WebhookSpec, conn: Connector) -> None:
        if spec.registration is None:
            raise ConfigError(f"{side}: the connector spec has no webhooks.registration")
        if not isinstance(conn, Requests):
            raise ConfigError(f"{side}: its connector cannot send the webhook requests")
        self.side, self.spec, self.reg, self.conn = side, spec, spec.registration, conn

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        outcome, answer = self.conn.request(method, path, body)
        if outcome.action != "ok":
            raise EtlError(f"{self.side}: {method} {path} answered HTTP {outcome.status}: "
                           f"{outcome.message}")
        return answer

    def listed(self) -> list[dict[str, Any]]:
        found = dig(self._request("GET", self.reg.path), self.reg.records)
        return [r for r in found or [] if isinstance(r, dict)]

    def action_ids(self) -> dict[str, int]:
        """The system's action ids by name: its own list when it answers, else the spec's."""
        ids = dict(self.reg.action_ids)
        if self.reg.actions_list is None:
            return ids
        try:
            listed = dig(self._request("GET", self.reg.actions_list), self.reg.records)
        except EtlError:
            return ids
        for row in listed or []:
            name, value = dig(row, self.reg.action_name), dig(row, self.reg.action_id)
            if name in ids and isinstance(value, int):
                ids[str(name)] = value
        return ids

    def url(self, public_url: str, collection: str) -> str:
        base = f"{public_url.rstrip('/')}/webhooks/{self.spec.path}"
        param = self.reg.collection_param
        return f"{base}?{urlencode({param: collection})}" if param else base

    def wanted(self, public_url: str, collections: list[str]) -> list[tuple[str, str, int, int]]:
        """(collection, action name, entity id, action id) for each callback ponte needs."""
        ids = self.action_ids()
        return [(coll, name, self.reg.entity_ids[coll], ids[name])
                for coll in collections if coll in self.reg.entity_ids
                for name in self.spec.registered_actions(coll) if name in ids]

    def register(self, public_url: str, secret: str, collections: list[str]) -> list[Callback]:
        f = self.reg.fields
        have = self.listed()
        out = []
        for coll, name, entity_id, action_id in self.wanted(public_url, collections):
            url = self.url(public_url, coll)
            same = next((r for r in have if r.get(f["entity"]) == entity_id and r.get(
                f["action"]) == action_id and r.get(f["url"]) == url), None)
            body = {f["entity"]: entity_id, f["action"]: action_id, f["url"]: url,
                    f["secret"]: secret}
            if same is None:
                made = self._request("POST", self.reg.path, body)
                out.append(Callback(self.side, coll, name, url, _id(dig(made, f["id"])),
                                    "created"))
            elif hmac.compare_digest(str(same.get(f["secret"]) or "").encode(),
                                     secret.encode()):
                out.append(Callback(self.side, coll, name, url, _id(same.get(f["id"])),
                                    "unchanged"))
            else:
                ident = _id(same.get(f["id"]))
                self._request("PATCH", self.reg.item.replace("{id}", str(ident)),
                              {f["secret"]: secret})
                out.append(Callback(self.side, coll, name, url, ident, "updated"))
        return out

    def status(self, public_url: str) -> list[Callback]:
        """The callbacks registered at ponte's address."""
        f = self.reg.fields
        base = f"{public_url.rstrip('/')}/webhooks/{self.spec.path}" if public_url else ""
        names: dict[Any, str] = {v: k for k, v in self.action_ids().items()}
        colls: dict[Any, str] = {v: k for k, v in self.reg.entity_ids.items()}
        return [Callback(self.side, colls.get(r.get(f["entity"]), str(r.get(f["entity"]))),
                         names.get(r.get(f["action"]), str(r.get(f["action"]))),
                         str(r.get(f["url"])), _id(r.get(f["id"])), "registered")
                for r in self.listed() if not base or str(r.get(f["url"], "")).startswith(base)]


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def collections(side: Side, mappings: Mapping[str, EntityMapping]) -> list[str]:
    return [m.systems[side].collection for m in mappings.values() if side in m.systems]


def register(settings: Settings, conns: Mapping[Side, Connector],
             mappings: Mapping[str, EntityMapping]) -> WebhookReport:
    """Register ponte's callbacks (idempotent) and list what to set by hand."""
    public = settings.serve.public_url
    if not public:
        raise ConfigError("PONTE_SERVE__PUBLIC_URL is not set: the address the systems reach "
                          "ponte serve at (e.g. https://ponte.example.com) is needed to "
                          "register its webhooks")
    out = WebhookReport()
    for side, spec in _registering(settings, mappings, out):
        secret = expected_secret(settings, side, spec)
        if not secret:
            raise ConfigError(f"PONTE_{side.upper()}__WEBHOOK_KEY is not set: the key the "
                              f"{side}'s webhook calls carry, registered with them")
        out.callbacks += Registrar(side, spec, conns[side]).register(
            public, secret, collections(side, mappings))
    return out


def _registering(settings: Settings, mappings: Mapping[str, EntityMapping],
                 out: WebhookReport) -> Iterator[tuple[Side, WebhookSpec]]:
    """The sides whose systems have a registration API; the others' manual set-up goes into
    ``out``."""
    for side in SIDES:
        spec = (settings.crm if side == "crm" else settings.erp).spec.webhooks
        if spec is None:
            continue
        if spec.registration is None:
            out.manual.append(manual(settings, side, spec, mappings))
            continue
        yield side, spec


def manual(settings: Settings, side: Side, spec: WebhookSpec,
           mappings: Mapping[str, EntityMapping]) -> ManualSetup:
    mine = set(collections(side, mappings))
    conf = settings.crm if side == "crm" else settings.erp
    url = f"{settings.serve.public_url.rstrip('/')}/webhooks/{spec.path}"
    return ManualSetup(side, conf.spec.title, url,
                       tuple(t for t, v in spec.topics.items() if v.collection in mine),
                       spec.manual or "the system's webhook settings")


def status(settings: Settings, conns: Mapping[Side, Connector],
           mappings: Mapping[str, EntityMapping]) -> WebhookReport:
    """What is registered at ponte's address in each system with a registration API."""
    out = WebhookReport()
    for side, spec in _registering(settings, mappings, out):
        out.callbacks += Registrar(side, spec, conns[side]).status(settings.serve.public_url)
    return out


__all__ = ["Callback", "ManualSetup", "Registrar", "WebhookReport", "register", "status"]
