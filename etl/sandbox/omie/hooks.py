"""Omie webhooks (reference B9): the developer portal's configuration, served by the admin API,
and the message each watched write delivers.

* Omie has no registration API: a URL (and optionally the topics it wants; all by default) is
  set in the developer portal, here ``POST /_sandbox/webhooks {url, topics?}``; ``GET`` lists
  (as any admin table), ``DELETE /_sandbox/webhooks/{id}`` removes. Configuring a URL sends it ``{"ping":"omie"}``.
  The configuration is kept in the ``webhooks`` table (so ``--db`` keeps it).
* Topics: ``ClienteFornecedor.Incluido|Alterado|Excluido``, ``Produto.Incluido|Alterado|
  Excluido``, ``VendaProduto.Incluida|Alterada|EtapaAlterada|Faturada|Excluida``: an order whose
  ``etapa`` moves to 60 or 70 (invoiced, as ``infoCadastro.faturado`` reads it) is ``Faturada``,
  another ``etapa`` change ``EtapaAlterada``, any other change ``Alterada``. ``Cancelada`` is
  accepted in a configuration but never sent (the simulator has no cancelled state). A topic
  may also be named by its entity alone (``VendaProduto``: all of its topics).
* The message: ``{messageId, topic, event, author, appKey, appHash, origin}``; ``event`` is the
  record as the Consultar call returns it (an order's blocks, plus ``idPedido``,
  ``numeroPedido``, ``etapa``, ``codigo_pedido_integracao`` and ``idCliente`` at the top);
  ``author`` is the person in the UI for admin-API writes, the integration user for API writes.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx

from etl.sandbox.omie.records import SELLERS, OmieRecords
from etl.sandbox.tables import Row

ORIGIN = "omie-connect-2.0"
ENTITY_OF = {"clientes": "ClienteFornecedor", "produtos": "Produto", "pedidos": "VendaProduto"}
TOPICS = [
    *(f"ClienteFornecedor.{t}" for t in ("Incluido", "Alterado", "Excluido")),
    *(f"Produto.{t}" for t in ("Incluido", "Alterado", "Excluido")),
    *(f"VendaProduto.{t}" for t in ("Incluida", "Alterada", "EtapaAlterada", "Faturada",
                                    "Cancelada", "Excluida")),
]
INVOICED = ("60", "70")


class PortalError(ValueError):
    """A webhook configuration the portal refuses (the admin API answers 400)."""


def check_config(body: Any) -> dict[str, Any]:
    """``{url, topics?}`` of a portal configuration, checked."""
    if not isinstance(body, dict):
        raise PortalError("body must be a JSON object {url, topics?}")
    unknown = sorted(set(body) - {"url", "topics"})
    if unknown:
        raise PortalError(f"unknown field(s) {unknown}; valid: ['topics', 'url']")
    url = body.get("url")
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise PortalError(f"url {url!r} is not an http(s) URL")
    topics = body.get("topics") or []
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise PortalError("topics must be a list of topic names, e.g. "
                          "['ClienteFornecedor.Alterado', 'VendaProduto']")
    entities = set(ENTITY_OF.values())
    bad = [t for t in topics if t not in TOPICS and t not in entities]
    if bad:
        raise PortalError(f"unknown topic(s) {bad}; valid: {TOPICS} or an entity alone "
                          f"{sorted(entities)}")
    return {"url": url, "topics": list(topics)}


def wants(config: dict[str, Any], topic: str) -> bool:
    topics = config.get("topics") or []
    return not topics or topic in topics or topic.split(".")[0] in topics


def topic_of(table: str, old: Row | None, new: Row | None) -> str:
    entity = ENTITY_OF[table]
    if table != "pedidos":
        verb = "Incluido" if old is None else "Excluido" if new is None else "Alterado"
        return f"{entity}.{verb}"
    if old is None:
        return f"{entity}.Incluida"
    if new is None:
        return f"{entity}.Excluida"
    before = str(old.data.get("cabecalho", {}).get("etapa", ""))
    after = str(new.data.get("cabecalho", {}).get("etapa", ""))
    if after in INVOICED and before not in INVOICED:
        return f"{entity}.Faturada"
    return f"{entity}.EtapaAlterada" if after != before else f"{entity}.Alterada"


class OmieHooks(OmieRecords):
    """Webhook delivery of the Omie simulator."""

    _ui_write = False

    def watched_tables(self) -> set[str]:
        return set(ENTITY_OF) if len(self.db["webhooks"]) else set()

    def configure_webhook(self, body: Any) -> dict[str, Any]:
        """Add a portal configuration (raises :class:`PortalError`) and ping its URL."""
        config = check_config(body)
        with self.db.lock:
            row = self.db["webhooks"].insert(config, self.clock.now())
            self.watch()
        self.deliveries.enqueue(config["url"], {"ping": "omie"})
        return self.render("webhooks", row)

    def render(self, table: str, row: Row) -> dict[str, Any]:
        if table == "webhooks":
            return {"id": row.id, "url": row.data.get("url"),
                    "topics": row.data.get("topics") or [], "created": row.created.isoformat()}
        return super().render(table, row)

    def on_change(self, table: str, old: Row | None, new: Row | None) -> None:
        topic = topic_of(table, old, new)
        urls = [w.data["url"] for w in self.db["webhooks"] if wants(w.data, topic)]
        if not urls:
            return
        row = new if new is not None else old
        assert row is not None
        author = SELLERS[0] if self._ui_write else SELLERS[1]
        message = {
            "messageId": str(uuid.UUID(int=self.deliveries.rng.getrandbits(128), version=4)),
            "topic": topic, "event": self.event(table, row),
            "author": {"email": author["email"].lower(), "name": author["nome"],
                       "userId": SELLERS.index(author) + 1},
            "appKey": self.app_key,
            "appHash": hashlib.sha256(f"omie-app:{self.app_key}".encode()).hexdigest()[:32],
            "origin": ORIGIN,
        }
        for url in urls:
            self.deliveries.enqueue(url, message)

    def event(self, table: str, row: Row) -> dict[str, Any]:
        """The record as its Consultar call returns it; orders with their keys on top."""
        rendered = self.render(table, row)
        if table != "pedidos":
            return rendered
        cab = rendered["cabecalho"]
        return {"idPedido": row.id, "numeroPedido": cab.get("numero_pedido"),
                "etapa": cab.get("etapa"),
                "codigo_pedido_integracao": cab.get("codigo_pedido_integracao", ""),
                "idCliente": cab.get("codigo_cliente"),
                "valorPedido": rendered["total_pedido"]["valor_total_pedido"], **rendered}

    # --- admin-API writes are a person's: their author is the UI user. A portal configuration
    # removed (or changed) through the generic admin routes is taken into account at once.

    def ui_create(self, table: str, data: dict[str, Any]) -> Row:
        with self.db.lock:
            self._ui_write = True
            try:
                return super().ui_create(table, data)
            finally:
                self._ui_write = False
                self.watch()

    def ui_update(self, table: str, rid: int, changes: dict[str, Any]) -> Row:
        with self.db.lock:
            self._ui_write = True
            try:
                return super().ui_update(table, rid, changes)
            finally:
                self._ui_write = False
                self.watch()

    def ui_delete(self, table: str, rid: int) -> bool:
        with self.db.lock:
            self._ui_write = True
            try:
                return super().ui_delete(table, rid)
            finally:
                self._ui_write = False
                self.watch()
