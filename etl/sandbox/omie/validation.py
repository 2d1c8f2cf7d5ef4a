"""Omie's fault codes, the fault itself, the field tables of each record type, and the checks
a call's parameters go through (unknown tags, lengths, numbers, dates)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from etl.sandbox.core import BRT
from etl.sandbox.geo import STATES

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

SERVICES = {"geral/clientes": "clientes", "geral/produtos": "produtos", "produtos/pedido": "pedidos",
            "geral/vendedores": "vendedores"}
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
