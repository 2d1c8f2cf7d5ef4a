"""What every Omie call stands on: the record types, the simulator's state, rendering, lookups
by id or integration code, and the list machinery (date window, paging)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from etl.sandbox import keys
from etl.sandbox.core import Simulator
from etl.sandbox.omie.validation import (
    DEFAULT_PAGE_CAP,
    DEFAULT_PAGE_SIZE,
    F_DUPLICATE,
    F_EMPTY_PAGE,
    F_NOT_FOUND,
    F_VALIDATION,
    LOTE_MAX,
    OmieFault,
    brt,
    check_tags,
    d_h,
    digits,
    fault_missing,
    parse_moment,
    sn,
)
from etl.sandbox.tables import Row


@dataclass(frozen=True)
class Kind:
    """Facts about one Omie record type."""

    table: str
    id_field: str
    int_field: str
    noun: str  # used in messages: "Cliente", "Produto", "Pedido"


CLIENTES = Kind("clientes", "codigo_cliente_omie", "codigo_cliente_integracao", "Cliente")
PRODUTOS = Kind("produtos", "codigo_produto", "codigo_produto_integracao", "Produto")
PEDIDOS = Kind("pedidos", "codigo_pedido", "codigo_pedido_integracao", "Pedido")
SELLERS = [
    {"nome": "Ana Souza", "email": "ANA.SOUZA@example.com.br"},
    {"nome": "Integração ponte", "email": "integracao@example.com.br"},
]


class OmieRecords(Simulator):
    """The Omie simulator's state and the helpers its calls share."""

    tables = ["clientes", "produtos", "pedidos", "vendedores",  # noqa: RUF012 - base's shape
              "webhooks"]  # the developer portal's webhook configuration (``hooks``)

    def __init__(
        self,
        *,
        app_key: str = keys.SANDBOX_APP_KEY,
        app_secret: str = keys.SANDBOX_APP_SECRET,
        rpm: int = 240,
        db_path: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(rpm=rpm, db_path=db_path, seed=seed)
        self.app_key = app_key
        self.app_secret = app_secret
        self._served: dict[str, float] = {}  # redundant-call rule: call fingerprint -> when
        self._fault_streak: dict[str, int] = {}
        self._blocked_until: dict[str, float] = {}
        self._populate_sellers()

    def _populate_sellers(self) -> None:
        """The account's sellers (vendedores), as the CRM's users: the same people, one
        e-mail typed in capitals as ERP users often do."""
        with self.db.lock:
            if not len(self.db["vendedores"]):
                at = self.clock.now()
                for seller in SELLERS:
                    self.db["vendedores"].insert(dict(seller), at)

    # --- time used by the redundant-call rule and the misuse block: real monotonic time,
    # moved forward by the admin clock's offset (so tests can skip the 60 s) but never frozen.
    def monotonic(self) -> float:
        return time.monotonic() + self.clock.offset.total_seconds()

    def reset(self) -> None:
        super().reset()
        with self.db.lock:
            self._served.clear()
            self._fault_streak.clear()
            self._blocked_until.clear()
        self._populate_sellers()

    # --- rendering -------------------------------------------------------------------------

    def render(self, table: str, row: Row) -> dict[str, Any]:
        data = copy.deepcopy(row.data)
        api = sn(data.pop("importado_api", None) if table == "pedidos"
                 else data.get("importado_api"))
        d_inc, h_inc = d_h(row.created)
        d_alt, h_alt = d_h(row.updated)
        user = "WEBSERVICE" if api else "USUARIO"
        stamps = {"dInc": d_inc, "hInc": h_inc, "uInc": user,
                  "dAlt": d_alt, "hAlt": h_alt, "uAlt": user, "cImpAPI": "S" if api else "N"}
        if table == "clientes":
            out = {"codigo_cliente_omie": row.id, **data}
            doc = digits(out.get("cnpj_cpf"))
            if doc:
                out.setdefault("pessoa_fisica", "S" if len(doc) == 11 else "N")
            out.setdefault("inativo", "N")
            out.setdefault("exterior", "N")
            out["info"] = stamps
            out.update(out.pop("_raw", None) or {})  # admin-stored malformed fields, verbatim
            return out
        if table == "produtos":
            out = {"codigo_produto": row.id, **data}
            out.setdefault("inativo", "N")
            out.setdefault("bloqueado", "N")
            out["info"] = stamps
            return out
        if table == "pedidos":
            cab = {"codigo_pedido": row.id, **data.get("cabecalho", {})}
            cab.setdefault("numero_pedido", str(row.id).zfill(15))
            det = data.get("det", [])
            cab["quantidade_itens"] = len(det)
            data["cabecalho"] = cab
            data["total_pedido"] = self._totals(det)
            faturado = str(cab.get("etapa", "")) in ("60", "70")
            data["infoCadastro"] = {
                **stamps, "cancelado": "N", "faturado": "S" if faturado else "N",
                "denegado": "N", "autorizado": "N", "devolvido": "N", "devolvido_parcial": "N",
                "dCan": "", "hCan": "", "uCan": "",
                "dFat": d_alt if faturado else "", "hFat": h_alt if faturado else "",
                "uFat": user if faturado else "",
            }
            return data
        if table == "vendedores":
            return {"codigo": row.id, "codInt": "", "inativo": "N", **data}
        raise KeyError(table)

    @staticmethod
    def _totals(det: list[dict[str, Any]]) -> dict[str, float]:
        merc = desc = 0.0
        for item in det:
            prod = item.get("produto", {})
            q = float(prod.get("quantidade") or 0)
            v = float(prod.get("valor_unitario") or 0)
            merc += q * v
            desc += float(prod.get("valor_desconto") or 0)
        return {"valor_mercadorias": round(merc, 2), "valor_descontos": round(desc, 2),
                "valor_total_pedido": round(merc - desc, 2)}

    # --- admin hooks: the UI never shows the Omie id or info blocks as editable ---------------

    def ui_create(self, table: str, data: dict[str, Any]) -> Row:
        clean = {k: v for k, v in data.items()
                 if k not in ("codigo_cliente_omie", "codigo_produto", "info", "infoCadastro")}
        if table == "pedidos" and isinstance(clean.get("cabecalho"), dict):
            clean["cabecalho"] = {k: v for k, v in clean["cabecalho"].items()
                                  if k != "codigo_pedido"}
        clean.setdefault("importado_api", "N")
        return super().ui_create(table, clean)

    # --- lookups ---------------------------------------------------------------------------

    def _by_int(self, kind: Kind, code: Any) -> Row | None:
        """The first record (in table order) whose integration code reads as ``code``."""
        code = str(code)
        table = self.db[kind.table]
        rows: Iterable[Row] = table
        if kind is not PEDIDOS:  # narrowed by the index: the rows holding the text ``code``
            ids = table.index(kind.int_field).equal(code)  # ... or a number, or another kind
            if ids is None or not ids:
                return None
            found = [r for i in ids if (r := table.get(i)) is not None]
            rows = found if len(found) == 1 else [r for r in table if r.id in ids]
        for row in rows:
            value = (row.data.get("cabecalho", {}) if kind is PEDIDOS else row.data).get(
                kind.int_field)
            if value not in (None, "") and str(value) == code:
                return row
        return None

    def _by_id(self, kind: Kind, value: Any) -> Row | None:
        try:
            return self.db[kind.table].get(int(value))
        except (TypeError, ValueError):
            return None

    def _locate(self, kind: Kind, key: dict[str, Any], *, id_tag: str | None = None,
                int_tag: str | None = None) -> Row:
        """Find by Omie id or integration code; Client-105 when absent."""
        id_tag = id_tag or kind.id_field
        int_tag = int_tag or kind.int_field
        if key.get(id_tag) not in (None, "", 0):
            row = self._by_id(kind, key[id_tag])
            if row is None:
                raise OmieFault(F_NOT_FOUND, f"ERROR: {kind.noun} não cadastrado para o Código "
                                             f"[{key[id_tag]}] !")
            return row
        if key.get(int_tag) not in (None, ""):
            row = self._by_int(kind, key[int_tag])
            if row is None:
                raise OmieFault(F_NOT_FOUND, f"ERROR: {kind.noun} não cadastrado para o Código "
                                             f"de Integração [{key[int_tag]}] !")
            return row
        raise fault_missing(id_tag)

    @staticmethod
    def _status(kind: Kind, row: Row, text: str, data: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        src = data if data is not None else row.data
        return {kind.id_field: row.id, kind.int_field: src.get(kind.int_field, ""),
                "codigo_status": "0", "descricao_status": text}

    def _check_int_free(self, kind: Kind, data: dict[str, Any], *,
                        exclude: int | None = None) -> None:
        """Client-102 when another record already holds ``data``'s integration code."""
        code = data.get(kind.int_field)
        if code not in (None, ""):
            other = self._by_int(kind, code)
            if other is not None and other.id != exclude:
                raise OmieFault(F_DUPLICATE, f"ERROR: {kind.noun} já cadastrado para o Código "
                                             f"de Integração [{code}] com o nCod [{other.id}] !")

    # --- list machinery --------------------------------------------------------------------

    def _window(self, p: dict[str, Any]) -> Callable[[Row], bool] | None:
        d_de, d_ate = p.get("filtrar_por_data_de"), p.get("filtrar_por_data_ate")
        if not d_de and not d_ate:
            return None
        inc, alt = sn(p.get("filtrar_apenas_inclusao")), sn(p.get("filtrar_apenas_alteracao"))
        if self.faults.window_needs_flag and not (inc or alt):
            return None  # observed quirk: the window alone filters nothing
        lo = hi = None
        if d_de:
            lo = parse_moment(d_de, p.get("filtrar_por_hora_de") or "00:00:00", "de")
        if d_ate:
            hi = parse_moment(d_ate, p.get("filtrar_por_hora_ate") or "23:59:59", "ate")

        def within(dt: datetime) -> bool:
            local = brt(dt)
            return (lo is None or local >= lo) and (hi is None or local <= hi)

        if inc and not alt:
            return lambda r: within(r.created)
        if alt and not inc:
            return lambda r: within(r.updated)
        return lambda r: within(r.created) or within(r.updated)

    def _page(self, p: dict[str, Any], rows: list[Row]) -> tuple[dict[str, Any], list[Row]]:
        try:
            pagina = max(1, int(p.get("pagina") or 1))
            size = int(p.get("registros_por_pagina") or DEFAULT_PAGE_SIZE)
        except (TypeError, ValueError):
            raise OmieFault(F_VALIDATION, "ERROR: Valor inválido na tag [pagina] ou "
                                          "[registros_por_pagina]!") from None
        size = max(1, min(size, self.faults.page_cap or DEFAULT_PAGE_CAP))
        total = len(rows)
        pages = math.ceil(total / size)
        if total == 0 or pagina > pages:
            raise OmieFault(F_EMPTY_PAGE, f"ERROR: Não existem registros para a página [{pagina}]!")
        chunk = rows[(pagina - 1) * size: pagina * size]
        head = {"pagina": pagina, "total_de_paginas": pages, "registros": len(chunk),
                "total_de_registros": total}
        return head, chunk

    def _common_filters(self, p: dict[str, Any], rows: list[Row]) -> list[Row]:
        window = self._window(p)
        if window is not None:
            rows = [r for r in rows if window(r)]
        if sn(p.get("apenas_importado_api")):
            rows = [r for r in rows if sn(r.data.get("importado_api"))]
        return rows

    def _insert(self, kind: Kind, data: dict[str, Any]) -> Row:
        return self.db[kind.table].insert(data, self.write_instant())

    def _lote(self, p: dict[str, Any], list_key: str, one: Callable[[dict[str, Any]], Any]
              ) -> dict[str, Any]:
        check_tags(p, {"lote", list_key}, f"{list_key}_lote_request")
        items = p.get(list_key) or []
        if not isinstance(items, list) or not items:
            raise fault_missing(list_key)
        if len(items) > LOTE_MAX:
            raise OmieFault(F_VALIDATION, f"ERROR: A tag [{list_key}] está limitada a "
                                          f"{LOTE_MAX} ocorrências por requisição!")
        for item in items:
            one(item)
        return {"lote": p.get("lote", 0), "codigo_status": "0",
                "descricao_status": f"Lote processado com sucesso! ({len(items)} registros)"}
