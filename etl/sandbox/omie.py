"""The Omie simulator: ``geral/clientes/``, ``geral/produtos/`` and ``produtos/pedido/`` as the
public JSON-over-POST API serves them (reference Part B), plus the ``/_sandbox`` admin routes.

Request style: ``POST /api/v1/<service>/`` with ``{call, app_key, app_secret, param: [{...}]}``.
The trailing slash is required (301 without it). Every fault is ``{"faultstring","faultcode"}``,
normally with HTTP 500. Codes whose real value is unknown are sandbox choices, listed here:

==========================  ================================================================
faultcode                   when
==========================  ================================================================
SOAP-ENV:Client-101         invalid app_key / app_secret (seen for credentials by some) [U]
SOAP-ENV:Client-1           body is not JSON (``JSON request with SyntaxError``)
SOAP-ENV:Client-2           JSON but not an envelope (``Invalid JSON Object``), unknown call
SOAP-ENV:Client-5001        unknown parameter tag, one per response (verbatim style)
SOAP-ENV:Client-1020        validation: missing, overlong or invalid field; names ``tag [x]``
SOAP-ENV:Client-102         duplicate integration code (or CPF/CNPJ) on inclusion
SOAP-ENV:Client-105         record not found (Consultar/Alterar/Excluir, order references)
SOAP-ENV:Client-5113        empty page / past the end (verbatim)
SOAP-ENV:Client-6           identical list call within 60 s (``Aguarde N segundos``)
SOAP-ENV:Server             injected server error (``Faults.error_rate``)
MISUSE_API_PROCESS          HTTP 425 after ``Faults.misuse_after`` faults in a row (off)
==========================  ================================================================

Timestamps: rows keep aware-UTC ``created``/``updated``; ``render`` shows them as naive Brasília
``dd/mm/aaaa`` + ``hh:mm:ss`` (truncated to the second) in ``info`` / ``infoCadastro``. Table
``data`` holds the native fields without the Omie id and without those blocks, so a seeder can
``sim.db["clientes"].insert(data, at)`` directly.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from stdnum.br import cnpj as br_cnpj
from stdnum.br import cpf as br_cpf

from etl import settings
from etl.sandbox.admin import admin_routes
from etl.sandbox.core import BRT, Row, Simulator
from etl.sandbox.geo import CITIES, CITY_BY_IBGE, STATES

F_CREDENTIALS = "SOAP-ENV:Client-101"
F_SYNTAX = "SOAP-ENV:Client-1"
F_ENVELOPE = "SOAP-ENV:Client-2"
F_UNKNOWN_TAG = "SOAP-ENV:Client-5001"
F_VALIDATION = "SOAP-ENV:Client-1020"
F_DUPLICATE = "SOAP-ENV:Client-102"
F_NOT_FOUND = "SOAP-ENV:Client-105"
F_EMPTY_PAGE = "SOAP-ENV:Client-5113"
F_REDUNDANT = "SOAP-ENV:Client-6"
F_SERVER = "SOAP-ENV:Server"
F_MISUSE = "MISUSE_API_PROCESS"

REDUNDANT_WINDOW_S = 60.0
DEFAULT_PAGE_SIZE = 50
DEFAULT_PAGE_CAP = 100
LOTE_MAX = 50

SERVICES = {"geral/clientes": "clientes", "geral/produtos": "produtos", "produtos/pedido": "pedidos"}
UFS = {uf for uf, _ in STATES}


class OmieFault(Exception):
    """A vendor fault; ``status`` is the HTTP status it travels with."""

    def __init__(self, code: str, message: str, *, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"faultstring": self.message, "faultcode": self.code}


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised inside the ASGI app after a partial response: uvicorn closes the socket
    mid-body, and Starlette's TestClient re-raises it to the caller as a transport error."""


# --- field tables (reference B3/B6) --------------------------------------------------------

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


CLIENTE_FIELDS = _words("""
codigo_cliente_omie codigo_cliente_integracao razao_social cnpj_cpf nome_fantasia
telefone1_ddd telefone1_numero telefone2_ddd telefone2_numero fax_ddd fax_numero email homepage
contato endereco endereco_numero complemento bairro estado cidade cidade_ibge cep codigo_pais
separar_endereco pesquisar_cep inscricao_estadual inscricao_municipal inscricao_suframa
optante_simples_nacional produtor_rural contribuinte tipo_atividade cnae observacao obs_detalhadas
tags pessoa_fisica exterior importado_api valor_limite_credito bloquear_faturamento recomendacoes
enderecoEntrega nif documento_exterior inativo dadosBancarios caracteristicas bloquear_exclusao
info""")
CLIENTE_LENGTHS = {"razao_social": 60, "nome_fantasia": 100, "cnpj_cpf": 20, "email": 500,
                   "estado": 2, "cidade": 40, "cep": 10, "telefone1_ddd": 5,
                   "telefone1_numero": 15, "codigo_cliente_integracao": 60}
CLIENTE_FILTRO = _words("""codigo_cliente_omie codigo_cliente_integracao cnpj_cpf razao_social
nome_fantasia endereco bairro cidade estado cep contato email homepage inscricao_municipal
inscricao_estadual inscricao_suframa pessoa_fisica optante_simples_nacional inativo tags""")

PRODUTO_FIELDS = _words("""
codigo_produto codigo_produto_integracao codigo descricao unidade ncm ean valor_unitario
codigo_familia tipoItem peso_liq peso_bruto altura largura profundidade marca modelo
descr_detalhada obs_internas bloqueado inativo importado_api tabelas_preco recomendacoes_fiscais
quantidade_estoque cst_icms aliquota_icms cst_pis cst_cofins cfop info""")
# Sandbox choices (the reference has no product length table).
PRODUTO_LENGTHS = {"codigo_produto_integracao": 60, "codigo": 60, "descricao": 120,
                   "unidade": 6, "ncm": 10, "ean": 14}

PEDIDO_BLOCKS = _words("""cabecalho det frete informacoes_adicionais lista_parcelas
observacoes total_pedido infoCadastro departamentos exportacao""")

LIST_COMMON = _words("""pagina registros_por_pagina apenas_importado_api filtrar_por_data_de
filtrar_por_data_ate filtrar_por_hora_de filtrar_por_hora_ate filtrar_apenas_inclusao
filtrar_apenas_alteracao ordenar_por ordem_decrescente""")
CLIENTES_LIST = LIST_COMMON | {"clientesFiltro", "clientesPorCodigo", "exibir_caracteristicas",
                               "exibir_obs"}
PRODUTOS_LIST = LIST_COMMON | _words("""filtrar_apenas_omiepdv filtrar_apenas_familia
filtrar_apenas_descricao inativo exibir_tabelas_preco exibir_caracteristicas exibir_kit
produtosPorCodigo""")
PEDIDOS_LIST = LIST_COMMON | _words("""filtrar_por_cliente filtrar_por_vendedor etapa
numero_pedido_de numero_pedido_ate apenas_resumo data_previsao_de data_previsao_ate
data_faturamento_de data_faturamento_ate data_cancelamento_de data_cancelamento_ate
status_pedido""")


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


# --- small helpers -------------------------------------------------------------------------

def brt(dt: datetime) -> datetime:
    """Aware UTC -> naive Brasília, truncated to the second."""
    return dt.astimezone(BRT).replace(tzinfo=None, microsecond=0)


def d_h(dt: datetime) -> tuple[str, str]:
    local = brt(dt)
    return local.strftime("%d/%m/%Y"), local.strftime("%H:%M:%S")


def digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def fault_missing(tag: str) -> OmieFault:
    return OmieFault(F_VALIDATION, f"ERROR: O preenchimento da tag [{tag}] é obrigatório!")


def fault_unknown_tag(tag: str, complex_type: str) -> OmieFault:
    return OmieFault(F_UNKNOWN_TAG, f"ERROR: Tag [{tag.upper()}] não faz parte da estrutura "
                                    f"do tipo complexo [{complex_type}]!")


def check_tags(param: dict[str, Any], known: frozenset[str] | set[str], complex_type: str) -> None:
    for tag in param:
        if tag not in known:
            raise fault_unknown_tag(tag, complex_type)


def check_lengths(data: dict[str, Any], limits: dict[str, int]) -> None:
    for tag, limit in limits.items():
        value = data.get(tag)
        if isinstance(value, str) and len(value) > limit:
            raise OmieFault(F_VALIDATION, f"ERROR: O conteúdo da tag [{tag}] excede o tamanho "
                                          f"máximo permitido de {limit} caracteres!")


def number(data: dict[str, Any], tag: str, path: str | None = None) -> float:
    value = data.get(tag)
    if value in (None, ""):
        raise fault_missing(path or tag)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise OmieFault(F_VALIDATION, f"ERROR: Valor inválido [{value}] para a tag "
                                      f"[{path or tag}]!") from None


def parse_date(value: str, tag: str) -> datetime:
    try:
        return datetime.strptime(value, "%d/%m/%Y")
    except (TypeError, ValueError):
        raise OmieFault(F_VALIDATION, f"ERROR: Data inválida [{value}] na tag [{tag}]! "
                                      "Formato esperado: dd/mm/aaaa") from None


def parse_moment(day: str, hour: str, side: str) -> datetime:
    """``filtrar_por_data_<side>`` + ``filtrar_por_hora_<side>`` as one naive Brasília instant."""
    date = parse_date(day, f"filtrar_por_data_{side}")
    try:
        t = datetime.strptime(hour, "%H:%M:%S")
    except (TypeError, ValueError):
        raise OmieFault(F_VALIDATION, f"ERROR: Hora inválida [{hour}] na tag "
                                      f"[filtrar_por_hora_{side}]! Formato esperado: hh:mm:ss"
                        ) from None
    return date.replace(hour=t.hour, minute=t.minute, second=t.second)


def sn(value: Any) -> bool:
    return str(value or "").upper() == "S"


# --- the simulator -------------------------------------------------------------------------

class OmieSim(Simulator):
    """State and behaviour of the Omie API; ``create_app`` wraps it in ASGI."""

    tables = ["clientes", "produtos", "pedidos"]  # noqa: RUF012 - the base class's own shape

    def __init__(
        self,
        *,
        app_key: str = settings.SANDBOX_APP_KEY,
        app_secret: str = settings.SANDBOX_APP_SECRET,
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
        self.calls: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
            "geral/clientes": {
                "ListarClientes": self.listar_clientes,
                "ListarClientesResumido": self.listar_clientes_resumido,
                "ConsultarCliente": self.consultar_cliente,
                "IncluirCliente": self.incluir_cliente,
                "AlterarCliente": self.alterar_cliente,
                "UpsertCliente": self.upsert_cliente,
                "UpsertClienteCpfCnpj": self.upsert_cliente_cpf_cnpj,
                "ExcluirCliente": self.excluir_cliente,
                "AssociarCodIntCliente": self.associar_cod_int_cliente,
                "UpsertClientesPorLote": self.upsert_clientes_por_lote,
            },
            "geral/produtos": {
                "ListarProdutos": self.listar_produtos,
                "ListarProdutosResumido": self.listar_produtos_resumido,
                "ConsultarProduto": self.consultar_produto,
                "IncluirProduto": self.incluir_produto,
                "AlterarProduto": self.alterar_produto,
                "UpsertProduto": self.upsert_produto,
                "ExcluirProduto": self.excluir_produto,
                "UpsertProdutosPorLote": self.upsert_produtos_por_lote,
            },
            "produtos/pedido": {
                "ListarPedidos": self.listar_pedidos,
                "ConsultarPedido": self.consultar_pedido,
                "IncluirPedido": self.incluir_pedido,
                "AlterarPedidoVenda": self.alterar_pedido,
                "ExcluirPedido": self.excluir_pedido,
                "StatusPedido": self.status_pedido,
                "TrocarEtapaPedido": self.trocar_etapa_pedido,
            },
        }

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
        code = str(code)
        for row in self.db[kind.table]:
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

    # --- clientes --------------------------------------------------------------------------

    def _clientes_matching(self, p: dict[str, Any]) -> list[Row]:
        check_tags(p, CLIENTES_LIST, "clientes_list_request")
        rows = self._common_filters(p, list(self.db["clientes"]))
        filtro = p.get("clientesFiltro") or {}
        if filtro:
            if not isinstance(filtro, dict):
                raise OmieFault(F_VALIDATION, "ERROR: Estrutura inválida na tag [clientesFiltro]!")
            check_tags(filtro, CLIENTE_FILTRO, "clientesFiltro")
            for tag, want in filtro.items():
                if want in (None, ""):
                    continue
                if tag == "codigo_cliente_omie":
                    rows = [r for r in rows if str(r.id) == str(want)]
                elif tag == "cnpj_cpf":
                    rows = [r for r in rows if digits(r.data.get("cnpj_cpf")) == digits(want)]
                elif tag in ("razao_social", "nome_fantasia", "email", "cidade", "endereco",
                             "bairro", "contato"):
                    needle = str(want).lower()
                    rows = [r for r in rows if needle in str(r.data.get(tag, "")).lower()]
                elif tag == "inativo":
                    rows = [r for r in rows if r.data.get("inativo", "N") == want]
                elif tag == "tags":
                    wanted = {t.get("tag") if isinstance(t, dict) else t for t in want}
                    rows = [r for r in rows
                            if wanted & {t.get("tag") for t in r.data.get("tags", [])}]
                else:
                    rows = [r for r in rows if str(r.data.get(tag, "")) == str(want)]
        por_codigo = p.get("clientesPorCodigo")
        if por_codigo:
            ids, ints = set(), set()
            for item in por_codigo:
                if item.get("codigo_cliente_omie"):
                    ids.add(int(item["codigo_cliente_omie"]))
                if item.get("codigo_cliente_integracao"):
                    ints.add(str(item["codigo_cliente_integracao"]))
            rows = [r for r in rows
                    if r.id in ids or str(r.data.get("codigo_cliente_integracao", "")) in ints]
        return rows

    def listar_clientes(self, p: dict[str, Any]) -> dict[str, Any]:
        head, chunk = self._page(p, self._clientes_matching(p))
        return {**head, "clientes_cadastro": [self.render("clientes", r) for r in chunk]}

    def listar_clientes_resumido(self, p: dict[str, Any]) -> dict[str, Any]:
        head, chunk = self._page(p, self._clientes_matching(p))
        items = [{"codigo_cliente": r.id,
                  "codigo_cliente_integracao": r.data.get("codigo_cliente_integracao", ""),
                  "razao_social": r.data.get("razao_social", ""),
                  "nome_fantasia": r.data.get("nome_fantasia", ""),
                  "cnpj_cpf": r.data.get("cnpj_cpf", "")} for r in chunk]
        return {**head, "clientes_cadastro_resumido": items}

    def consultar_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_cliente_omie", "codigo_cliente_integracao"},
                   "clientes_cadastro_chave")
        return self.render("clientes", self._locate(CLIENTES, p))

    def _clean_cliente(self, p: dict[str, Any], *, inclusion: bool) -> dict[str, Any]:
        check_tags(p, CLIENTE_FIELDS, "clientes_cadastro")
        data = {k: v for k, v in p.items() if k not in ("codigo_cliente_omie", "info")}
        if inclusion and not str(data.get("razao_social") or "").strip():
            raise fault_missing("razao_social")
        check_lengths(data, CLIENTE_LENGTHS)
        if data.get("cnpj_cpf"):
            doc = digits(data["cnpj_cpf"])
            if len(doc) == 11 and br_cpf.is_valid(doc):
                data["cnpj_cpf"], data["pessoa_fisica"] = br_cpf.format(doc), "S"
            elif len(doc) == 14 and br_cnpj.is_valid(doc):
                data["cnpj_cpf"], data["pessoa_fisica"] = br_cnpj.format(doc), "N"
            else:
                raise OmieFault(F_VALIDATION, f"ERROR: CNPJ/CPF [{data['cnpj_cpf']}] inválido "
                                              "na tag [cnpj_cpf]!")
        if data.get("estado") and str(data["estado"]).upper() not in UFS:
            raise OmieFault(F_VALIDATION, f"ERROR: Estado [{data['estado']}] inválido na tag "
                                          "[estado]!")
        if data.get("estado"):
            data["estado"] = str(data["estado"]).upper()
        self._normalize_cidade(data)
        if inclusion:
            data.setdefault("inativo", "N")
            data.setdefault("exterior", "N")
        data["importado_api"] = "S"
        return data

    @staticmethod
    def _normalize_cidade(data: dict[str, Any]) -> None:
        """Omie stores the city as ``NOME (UF)`` and accepts a name or an IBGE code."""
        cidade = str(data.get("cidade") or "").strip()
        ibge = str(data.get("cidade_ibge") or "").strip()
        city = CITY_BY_IBGE.get(cidade) or (CITY_BY_IBGE.get(ibge) if not cidade else None)
        if city is None and cidade and not cidade.endswith(")"):
            uf = data.get("estado")
            city = next((c for c in CITIES if c.name.upper() == cidade.upper()
                         and (not uf or c.uf == uf)), None)
            if city is None:
                data["cidade"] = f"{cidade.upper()} ({uf})" if uf else cidade.upper()
                return
        if city is not None:
            data["cidade"] = f"{city.name.upper()} ({city.uf})"
            data["cidade_ibge"] = city.ibge
            data.setdefault("estado", city.uf)

    def _check_unique_cliente(self, data: dict[str, Any], *, exclude: int | None = None) -> None:
        code = data.get("codigo_cliente_integracao")
        if code not in (None, ""):
            other = self._by_int(CLIENTES, code)
            if other is not None and other.id != exclude:
                raise OmieFault(F_DUPLICATE, f"ERROR: Cliente já cadastrado para o Código de "
                                             f"Integração [{code}] com o nCod [{other.id}] !")
        doc = digits(data.get("cnpj_cpf"))
        if doc and self.faults.unique_cnpj_cpf:
            for row in self.db["clientes"]:
                if row.id != exclude and digits(row.data.get("cnpj_cpf")) == doc:
                    raise OmieFault(F_DUPLICATE, f"ERROR: Cliente já cadastrado para o CPF/CNPJ "
                                                 f"[{data['cnpj_cpf']}] com o Id [{row.id}] !")

    def _insert(self, kind: Kind, data: dict[str, Any]) -> Row:
        return self.db[kind.table].insert(data, self.write_instant())

    def incluir_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        data = self._clean_cliente(p, inclusion=True)
        self._check_unique_cliente(data)
        row = self._insert(CLIENTES, data)
        return self._status(CLIENTES, row, "Cliente cadastrado com sucesso!")

    def alterar_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, CLIENTE_FIELDS, "clientes_cadastro")
        if p.get("codigo_cliente_omie"):
            row = self._locate(CLIENTES, {"codigo_cliente_omie": p["codigo_cliente_omie"]})
        else:
            row = self._locate(CLIENTES, p)
        data = self._clean_cliente(p, inclusion=False)
        self._check_unique_cliente(data, exclude=row.id)
        self.db["clientes"].update(row.id, data, self.write_instant())
        return self._status(CLIENTES, row, "Cliente alterado com sucesso!")

    def upsert_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, CLIENTE_FIELDS, "clientes_cadastro")
        code = p.get("codigo_cliente_integracao")
        if code in (None, ""):
            raise fault_missing("codigo_cliente_integracao")
        row = self._by_int(CLIENTES, code)
        if row is None:
            return self.incluir_cliente(p)
        return self.alterar_cliente({k: v for k, v in p.items() if k != "codigo_cliente_omie"})

    def upsert_cliente_cpf_cnpj(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, CLIENTE_FIELDS, "clientes_cadastro")
        doc = digits(p.get("cnpj_cpf"))
        if not doc:
            raise fault_missing("cnpj_cpf")
        row = next((r for r in self.db["clientes"] if digits(r.data.get("cnpj_cpf")) == doc),
                   None)
        if row is None:
            return self.incluir_cliente(p)
        return self.alterar_cliente({**p, "codigo_cliente_omie": row.id})

    def excluir_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_cliente_omie", "codigo_cliente_integracao"},
                   "clientes_cadastro_chave")
        row = self._locate(CLIENTES, p)
        self.db["clientes"].delete(row.id)
        return self._status(CLIENTES, row, "Cliente excluído com sucesso!")

    def associar_cod_int_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_cliente_omie", "codigo_cliente_integracao"},
                   "clientes_cadastro_chave")
        if not p.get("codigo_cliente_omie"):
            raise fault_missing("codigo_cliente_omie")
        if not p.get("codigo_cliente_integracao"):
            raise fault_missing("codigo_cliente_integracao")
        row = self._locate(CLIENTES, {"codigo_cliente_omie": p["codigo_cliente_omie"]})
        data = {"codigo_cliente_integracao": str(p["codigo_cliente_integracao"])}
        check_lengths(data, CLIENTE_LENGTHS)
        self._check_unique_cliente(data, exclude=row.id)
        self.db["clientes"].update(row.id, data, self.write_instant())
        return self._status(CLIENTES, row, "Código de integração associado com sucesso!")

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

    def upsert_clientes_por_lote(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._lote(p, "clientes_cadastro", self.upsert_cliente)

    # --- produtos --------------------------------------------------------------------------

    def _produtos_matching(self, p: dict[str, Any]) -> list[Row]:
        check_tags(p, PRODUTOS_LIST, "produto_servico_list_request")
        rows = self._common_filters(p, list(self.db["produtos"]))
        if p.get("inativo") in ("S", "N"):
            rows = [r for r in rows if r.data.get("inativo", "N") == p["inativo"]]
        if p.get("filtrar_apenas_descricao"):
            needle = str(p["filtrar_apenas_descricao"]).strip("%").lower()
            rows = [r for r in rows if needle in str(r.data.get("descricao", "")).lower()]
        if p.get("filtrar_apenas_familia"):
            rows = [r for r in rows
                    if str(r.data.get("codigo_familia", "")) == str(p["filtrar_apenas_familia"])]
        por_codigo = p.get("produtosPorCodigo")
        if por_codigo:
            ids, ints, skus = set(), set(), set()
            for item in por_codigo:
                if item.get("codigo_produto"):
                    ids.add(int(item["codigo_produto"]))
                if item.get("codigo_produto_integracao"):
                    ints.add(str(item["codigo_produto_integracao"]))
                if item.get("codigo"):
                    skus.add(str(item["codigo"]))
            rows = [r for r in rows if r.id in ids
                    or str(r.data.get("codigo_produto_integracao", "")) in ints
                    or str(r.data.get("codigo", "")) in skus]
        return rows

    def listar_produtos(self, p: dict[str, Any]) -> dict[str, Any]:
        head, chunk = self._page(p, self._produtos_matching(p))
        return {**head, "produto_servico_cadastro": [self.render("produtos", r) for r in chunk]}

    def listar_produtos_resumido(self, p: dict[str, Any]) -> dict[str, Any]:
        head, chunk = self._page(p, self._produtos_matching(p))
        items = [{"codigo_produto": r.id,
                  "codigo_produto_integracao": r.data.get("codigo_produto_integracao", ""),
                  "codigo": r.data.get("codigo", ""), "descricao": r.data.get("descricao", ""),
                  "valor_unitario": r.data.get("valor_unitario", 0)} for r in chunk]
        return {**head, "produto_servico_resumido": items}

    def _locate_produto(self, p: dict[str, Any]) -> Row:
        if not p.get("codigo_produto") and not p.get("codigo_produto_integracao") \
                and p.get("codigo"):
            row = next((r for r in self.db["produtos"]
                        if str(r.data.get("codigo", "")) == str(p["codigo"])), None)
            if row is None:
                raise OmieFault(F_NOT_FOUND, f"ERROR: Produto não cadastrado para o Código "
                                             f"[{p['codigo']}] !")
            return row
        return self._locate(PRODUTOS, p)

    def consultar_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_produto", "codigo_produto_integracao", "codigo"},
                   "produto_servico_cadastro_chave")
        return self.render("produtos", self._locate_produto(p))

    def _clean_produto(self, p: dict[str, Any], *, inclusion: bool) -> dict[str, Any]:
        check_tags(p, PRODUTO_FIELDS, "produto_servico_cadastro")
        data = {k: v for k, v in p.items() if k not in ("codigo_produto", "info")}
        if inclusion:
            for tag in ("codigo_produto_integracao", "descricao", "unidade", "ncm"):
                if not str(data.get(tag) or "").strip():
                    raise fault_missing(tag)
            number(data, "valor_unitario")
            data.setdefault("codigo", data["codigo_produto_integracao"])
            data.setdefault("inativo", "N")
            data.setdefault("bloqueado", "N")
        if "valor_unitario" in data:
            data["valor_unitario"] = number(data, "valor_unitario")
        check_lengths(data, PRODUTO_LENGTHS)
        data["importado_api"] = "S"
        return data

    def _check_unique_produto(self, data: dict[str, Any], *, exclude: int | None = None) -> None:
        code = data.get("codigo_produto_integracao")
        if code not in (None, ""):
            other = self._by_int(PRODUTOS, code)
            if other is not None and other.id != exclude:
                raise OmieFault(F_DUPLICATE, f"ERROR: Produto já cadastrado para o Código de "
                                             f"Integração [{code}] com o nCod [{other.id}] !")

    def incluir_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        data = self._clean_produto(p, inclusion=True)
        self._check_unique_produto(data)
        row = self._insert(PRODUTOS, data)
        return self._status(PRODUTOS, row, "Produto cadastrado com sucesso!")

    def alterar_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, PRODUTO_FIELDS, "produto_servico_cadastro")
        if p.get("codigo_produto"):
            row = self._locate(PRODUTOS, {"codigo_produto": p["codigo_produto"]})
        else:
            row = self._locate(PRODUTOS, p)
        data = self._clean_produto(p, inclusion=False)
        self._check_unique_produto(data, exclude=row.id)
        self.db["produtos"].update(row.id, data, self.write_instant())
        return self._status(PRODUTOS, row, "Produto alterado com sucesso!")

    def upsert_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, PRODUTO_FIELDS, "produto_servico_cadastro")
        code = p.get("codigo_produto_integracao")
        if code in (None, ""):
            raise fault_missing("codigo_produto_integracao")
        if self._by_int(PRODUTOS, code) is None:
            return self.incluir_produto(p)
        return self.alterar_produto({k: v for k, v in p.items() if k != "codigo_produto"})

    def excluir_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_produto", "codigo_produto_integracao", "codigo"},
                   "produto_servico_cadastro_chave")
        row = self._locate_produto(p)
        self.db["produtos"].delete(row.id)
        return self._status(PRODUTOS, row, "Produto excluído com sucesso!")

    def upsert_produtos_por_lote(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._lote(p, "produto_servico_cadastro", self.upsert_produto)

    # --- pedidos ---------------------------------------------------------------------------

    def listar_pedidos(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, PEDIDOS_LIST, "pvpListarRequest")
        rows = self._common_filters(p, list(self.db["pedidos"]))
        if p.get("filtrar_por_cliente"):
            rows = [r for r in rows if str(r.data.get("cabecalho", {}).get("codigo_cliente"))
                    == str(p["filtrar_por_cliente"])]
        if p.get("etapa"):
            rows = [r for r in rows
                    if str(r.data.get("cabecalho", {}).get("etapa")) == str(p["etapa"])]
        head, chunk = self._page(p, rows)
        return {**head, "pedido_venda_produto": [self.render("pedidos", r) for r in chunk]}

    def _locate_pedido(self, p: dict[str, Any]) -> Row:
        if p.get("numero_pedido") and not p.get("codigo_pedido") \
                and not p.get("codigo_pedido_integracao"):
            want = str(p["numero_pedido"]).lstrip("0")
            for r in self.db["pedidos"]:
                num = r.data.get("cabecalho", {}).get("numero_pedido") or str(r.id)
                if str(num).lstrip("0") == want:
                    return r
            raise OmieFault(F_NOT_FOUND, f"ERROR: Pedido não cadastrado para o Número "
                                         f"[{p['numero_pedido']}] !")
        return self._locate(PEDIDOS, p)

    def consultar_pedido(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_pedido", "codigo_pedido_integracao", "numero_pedido"},
                   "pvpConsultarRequest")
        return {"pedido_venda_produto": self.render("pedidos", self._locate_pedido(p))}

    def _resolve_item(self, item: dict[str, Any], i: int) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise OmieFault(F_VALIDATION, f"ERROR: Estrutura inválida na tag [det[{i}]]!")
        ide = dict(item.get("ide") or {})
        prod = dict(item.get("produto") or {})
        if not str(ide.get("codigo_item_integracao") or "").strip():
            raise fault_missing("det.ide.codigo_item_integracao")
        if not prod.get("codigo_produto") and not prod.get("codigo_produto_integracao"):
            raise fault_missing("det.produto.codigo_produto")
        row = self._locate(PRODUTOS, prod)
        prod["quantidade"] = number(prod, "quantidade", "det.produto.quantidade")
        prod["valor_unitario"] = number(prod, "valor_unitario", "det.produto.valor_unitario")
        prod["codigo_produto"] = row.id
        for tag in ("descricao", "unidade", "ncm"):
            prod.setdefault(tag, row.data.get(tag, ""))
        prod["valor_total"] = round(prod["quantidade"] * prod["valor_unitario"]
                                    - float(prod.get("valor_desconto") or 0), 2)
        return {**item, "ide": ide, "produto": prod}

    def _check_pedido(self, data: dict[str, Any]) -> None:
        cab = data["cabecalho"]
        if not cab.get("codigo_cliente") and not cab.get("codigo_cliente_integracao"):
            raise fault_missing("cabecalho.codigo_cliente")
        cli = self._locate(CLIENTES, cab, id_tag="codigo_cliente",
                           int_tag="codigo_cliente_integracao")
        cab["codigo_cliente"] = cli.id
        for tag in ("data_previsao", "etapa", "codigo_parcela"):
            if not str(cab.get(tag) or "").strip():
                raise fault_missing(f"cabecalho.{tag}")
        parse_date(cab["data_previsao"], "cabecalho.data_previsao")
        if str(cab.get("codigo_parcela")) == "999" and not (
                data.get("lista_parcelas") or {}).get("parcela"):
            raise fault_missing("lista_parcelas.parcela")
        if not data.get("det"):
            raise fault_missing("det")
        info = data.get("informacoes_adicionais") or {}
        for tag in ("codigo_categoria", "codigo_conta_corrente", "consumidor_final"):
            if not str(info.get(tag) or "").strip():
                raise fault_missing(f"informacoes_adicionais.{tag}")
        if not str((data.get("frete") or {}).get("modalidade") or "").strip():
            raise fault_missing("frete.modalidade")
        code = cab.get("codigo_pedido_integracao")
        if code is not None and len(str(code)) > 60:
            raise OmieFault(F_VALIDATION, "ERROR: O conteúdo da tag "
                                          "[cabecalho.codigo_pedido_integracao] excede o "
                                          "tamanho máximo permitido de 60 caracteres!")

    def incluir_pedido(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, PEDIDO_BLOCKS, "pedido_venda_produto")
        data = {k: copy.deepcopy(v) for k, v in p.items()
                if k not in ("total_pedido", "infoCadastro")}
        cab = dict(data.get("cabecalho") or {})
        cab.pop("codigo_pedido", None)
        cab.pop("quantidade_itens", None)
        data["cabecalho"] = cab
        code = cab.get("codigo_pedido_integracao")
        if code in (None, ""):
            raise fault_missing("cabecalho.codigo_pedido_integracao")
        other = self._by_int(PEDIDOS, code)
        if other is not None:
            raise OmieFault(F_DUPLICATE, f"ERROR: Pedido já cadastrado para o Código de "
                                         f"Integração [{code}] com o nCod [{other.id}] !")
        self._check_pedido(data)
        data["det"] = [self._resolve_item(item, i) for i, item in enumerate(data["det"])]
        data["importado_api"] = "S"
        row = self._insert(PEDIDOS, data)
        cab["numero_pedido"] = str(row.id).zfill(15)
        return {"codigo_pedido": row.id, "codigo_pedido_integracao": code,
                "codigo_status": "0", "descricao_status": "Pedido cadastrado com sucesso!",
                "numero_pedido": cab["numero_pedido"]}

    def alterar_pedido(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, PEDIDO_BLOCKS, "pedido_venda_produto")
        cab_in = dict(p.get("cabecalho") or {})
        if not cab_in.get("codigo_pedido") and not cab_in.get("codigo_pedido_integracao"):
            raise fault_missing("cabecalho.codigo_pedido_integracao")
        if cab_in.get("codigo_pedido"):
            row = self._locate(PEDIDOS, {"codigo_pedido": cab_in["codigo_pedido"]})
        else:
            row = self._locate(PEDIDOS, cab_in)
        if str(row.data.get("cabecalho", {}).get("etapa")) in ("60", "70"):
            raise OmieFault(F_VALIDATION, f"ERROR: O Pedido [{row.id}] já foi faturado e não "
                                          "pode ser alterado! Tag [cabecalho.etapa]")
        data = copy.deepcopy(row.data)
        cab_in.pop("codigo_pedido", None)
        cab_in.pop("quantidade_itens", None)
        data.setdefault("cabecalho", {}).update(cab_in)
        for block in ("frete", "informacoes_adicionais", "lista_parcelas", "observacoes",
                      "departamentos", "exportacao"):
            if block in p:
                if isinstance(p[block], dict) and isinstance(data.get(block), dict):
                    data[block] = {**data[block], **p[block]}
                else:
                    data[block] = copy.deepcopy(p[block])
        if "det" in p:
            items = {str(i.get("ide", {}).get("codigo_item_integracao")): i
                     for i in data.get("det", [])}
            for i, item in enumerate(p["det"] or []):
                code = str((item.get("ide") or {}).get("codigo_item_integracao") or "")
                if (item.get("ide") or {}).get("acao_item") == "E":
                    items.pop(code, None)
                    continue
                old = items.get(code, {})
                merged = {**old, **item,
                          "ide": {**old.get("ide", {}), **(item.get("ide") or {})},
                          "produto": {**old.get("produto", {}), **(item.get("produto") or {})}}
                merged["ide"].pop("acao_item", None)
                items[code] = self._resolve_item(merged, i)
            data["det"] = list(items.values())
        self._check_pedido(data)
        row.data.clear()
        self.db["pedidos"].update(row.id, data, self.write_instant())
        cab = data["cabecalho"]
        return {"codigo_pedido": row.id,
                "codigo_pedido_integracao": cab.get("codigo_pedido_integracao", ""),
                "codigo_status": "0", "descricao_status": "Pedido alterado com sucesso!",
                "numero_pedido": cab.get("numero_pedido") or str(row.id).zfill(15)}

    def excluir_pedido(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_pedido", "codigo_pedido_integracao"}, "pvpExcluirRequest")
        row = self._locate(PEDIDOS, p)
        self.db["pedidos"].delete(row.id)
        return {"codigo_pedido": row.id,
                "codigo_pedido_integracao": row.data.get("cabecalho", {}).get(
                    "codigo_pedido_integracao", ""),
                "codigo_status": "0", "descricao_status": "Pedido excluído com sucesso!"}

    def status_pedido(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_pedido", "codigo_pedido_integracao"}, "pvpStatusRequest")
        rendered = self.render("pedidos", self._locate(PEDIDOS, p))
        cab, info = rendered["cabecalho"], rendered["infoCadastro"]
        return {"codigo_pedido": cab["codigo_pedido"],
                "codigo_pedido_integracao": cab.get("codigo_pedido_integracao", ""),
                "numero_pedido": cab["numero_pedido"], "etapa": cab.get("etapa", ""),
                "cancelado": info["cancelado"], "faturado": info["faturado"],
                "denegado": info["denegado"], "autorizado": info["autorizado"],
                "codigo_status": "0", "descricao_status": "Status do pedido consultado."}

    def trocar_etapa_pedido(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, {"codigo_pedido", "codigo_pedido_integracao", "etapa"},
                   "pvpTrocarEtapaRequest")
        row = self._locate(PEDIDOS, p)
        if not str(p.get("etapa") or "").strip():
            raise fault_missing("etapa")
        cab = {**row.data.get("cabecalho", {}), "etapa": str(p["etapa"])}
        self.db["pedidos"].update(row.id, {"cabecalho": cab}, self.write_instant())
        return {"codigo_pedido": row.id,
                "codigo_pedido_integracao": cab.get("codigo_pedido_integracao", ""),
                "codigo_status": "0", "descricao_status": "Etapa do pedido alterada com sucesso!"}

    # --- one request, end to end (no I/O; the ASGI shell adds latency/drops) ----------------

    def handle(self, service: str, raw: bytes) -> tuple[int, Any, dict[str, str], str]:
        """Answer one API request: (status, JSON body or text, headers, endpoint label)."""
        label = f"{service}/?"
        try:
            try:
                envelope = json.loads(raw.decode("utf-8") or "null")
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise OmieFault(F_SYNTAX, "ERROR: JSON request with SyntaxError") from None
            if not isinstance(envelope, dict) or not isinstance(envelope.get("call"), str):
                raise OmieFault(F_ENVELOPE, "ERROR: Invalid JSON Object")
            call = envelope["call"]
            label = f"{service}/{call}"
            app_key = str(envelope.get("app_key") or "")
            with self.db.lock:
                return self._handle_locked(service, call, app_key, envelope, label)
        except OmieFault as fault:
            return fault.status, fault.body(), {}, label

    def _handle_locked(self, service: str, call: str, app_key: str, envelope: dict[str, Any],
                       label: str) -> tuple[int, Any, dict[str, str], str]:
        now = self.monotonic()
        blocked = self._blocked_until.get(app_key, 0.0)
        if blocked > now:
            raise OmieFault(F_MISUSE, "ERROR: API bloqueada por consumo indevido. Tente "
                                      f"novamente em {math.ceil(blocked - now)} segundos.",
                            status=425)
        if burst := self.faults.burst_429:
            self.faults.burst_429 = burst - 1
            return 429, "Too many Requests", {"Retry-After": "1"}, label
        if app_key != self.app_key or str(envelope.get("app_secret") or "") != self.app_secret:
            return self._count_fault(app_key, OmieFault(
                F_CREDENTIALS, "ERROR: A chave de acesso (app_key/app_secret) informada não é "
                               "válida!"), label)
        handler = self.calls[service].get(call)
        if handler is None:
            return self._count_fault(app_key, OmieFault(
                F_ENVELOPE, f"ERROR: Método [{call}] não existe no serviço [{service}]!"), label)
        allowed, wait = self.limiter.allow(f"{app_key}:{call}")
        if not allowed:
            return 429, "Too many Requests", {"Retry-After": str(max(1, math.ceil(wait)))}, label
        params = envelope.get("param")
        if params is None:
            params = [{}]
        if not isinstance(params, list) or (params and not isinstance(params[0], dict)):
            return self._count_fault(app_key, OmieFault(F_ENVELOPE, "ERROR: Invalid JSON Object"),
                                     label)
        param = params[0] if params else {}
        fingerprint = ""
        if call.startswith("Listar") and self.faults.redundant_rule:
            fingerprint = f"{app_key}|{service}|{call}|{json.dumps(param, sort_keys=True)}"
            self._served = {k: t for k, t in self._served.items()
                            if t > now - REDUNDANT_WINDOW_S}
            served = self._served.get(fingerprint)
            if served is not None:
                left = max(1, math.ceil(served + REDUNDANT_WINDOW_S - now))
                return self._count_fault(app_key, OmieFault(
                    F_REDUNDANT, f"Consumo redundante detectado. Aguarde {left} segundos para "
                                 "uma nova requisição."), label)
        try:
            result = handler(param)
        except OmieFault as fault:
            if self.faults.write_faults_http200 and not call.startswith(("Listar", "Consultar")):
                fault.status = 200
            return self._count_fault(app_key, fault, label)
        if fingerprint:
            self._served[fingerprint] = now
        self._fault_streak[app_key] = 0
        return 200, result, {}, label

    def _count_fault(self, app_key: str, fault: OmieFault, label: str
                     ) -> tuple[int, Any, dict[str, str], str]:
        """Faults in a row lead to the misuse block when ``Faults.misuse_after`` is set."""
        streak = self._fault_streak.get(app_key, 0) + 1
        self._fault_streak[app_key] = streak
        if self.faults.misuse_after and streak >= self.faults.misuse_after:
            self._blocked_until[app_key] = self.monotonic() + self.faults.misuse_block_s
            self._fault_streak[app_key] = 0
        return fault.status, fault.body(), {}, label


# --- ASGI shell ----------------------------------------------------------------------------

class _Service:
    """The ASGI endpoint of one Omie service URL; applies the network-level fault knobs."""

    def __init__(self, sim: OmieSim, service: str) -> None:
        self.sim = sim
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sim, faults = self.sim, self.sim.faults
        body = b""
        if scope["method"] == "GET":  # the generated PHP client's ``?JSON=`` form
            from urllib.parse import parse_qs
            qs = parse_qs(scope.get("query_string", b"").decode())
            body = (qs.get("JSON") or [""])[0].encode()
        else:
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.drop_rate and sim.rng.random() < faults.drop_rate:
            sim.requests.record(self._label(body), 0)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b'{"', "more_body": True})
            raise DroppedConnection("sandbox dropped the connection (drop_rate)")
        if faults.timeout_rate and sim.rng.random() < faults.timeout_rate:
            await asyncio.sleep(faults.timeout_s)
        response: Response
        if faults.error_rate and sim.rng.random() < faults.error_rate:
            label = self._label(body)
            response = JSONResponse({"faultstring": "ERROR: Erro interno do servidor. Tente "
                                                    "novamente mais tarde.",
                                     "faultcode": F_SERVER}, status_code=500)
        else:
            status, payload, headers, label = sim.handle(self.service, body)
            if isinstance(payload, str):
                response = PlainTextResponse(payload, status_code=status, headers=headers)
            else:
                response = JSONResponse(payload, status_code=status, headers=headers)
        sim.requests.record(label, response.status_code)
        await response(scope, receive, send)

    def _label(self, body: bytes) -> str:
        try:
            call = json.loads(body).get("call")
        except (ValueError, AttributeError):
            call = None
        return f"{self.service}/{call if isinstance(call, str) else '?'}"


def create_app(sim: OmieSim) -> Starlette:
    """The ASGI app: the three service URLs, their slash-less 301s, and ``/_sandbox``."""
    routes: list[Route] = []
    for service in SERVICES:
        routes.append(Route(f"/api/v1/{service}/", _Service(sim, service),
                            methods=["POST", "GET"]))

        async def redirect(request: Any, service: str = service) -> Response:
            sim.requests.record(service, 301)
            return RedirectResponse(f"/api/v1/{service}/", status_code=301)

        routes.append(Route(f"/api/v1/{service}", redirect, methods=["POST", "GET"]))
    routes.extend(admin_routes(sim))
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app


__all__ = ["DroppedConnection", "OmieFault", "OmieSim", "create_app"]
