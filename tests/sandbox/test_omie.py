"""The Omie simulator, exercised only through HTTP (in-process TestClient, plus one real
uvicorn server for the network-level faults)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from etl.sandbox import keys
from etl.sandbox.omie import OmieSim, create_app

KEY, SECRET = keys.SANDBOX_APP_KEY, keys.SANDBOX_APP_SECRET
CLI, PRO, PED = "geral/clientes", "geral/produtos", "produtos/pedido"
T0 = datetime(2026, 3, 10, 13, 0, 0, tzinfo=UTC)  # 10/03/2026 10:00:00 in Brasília
CNPJ = ["11222333000181", "11444777000161", "45723174000110", "04252011000110"]
CPF = "52998224725"


@pytest.fixture
def omie_sim() -> OmieSim:
    sim = OmieSim()
    sim.faults.redundant_rule = False  # most tests repeat list calls; the rule has its own tests
    return sim


@pytest.fixture
def omie_client(omie_sim: OmieSim) -> Iterator[TestClient]:
    with TestClient(create_app(omie_sim)) as client:
        yield client


def post(client: httpx.Client, service: str, call: str, param: dict[str, Any] | None = None,
         *, key: str = KEY, secret: str = SECRET) -> httpx.Response:
    body = {"call": call, "app_key": key, "app_secret": secret, "param": [param or {}]}
    return client.post(f"/api/v1/{service}/", json=body)


def ok(client: httpx.Client, service: str, call: str, param: dict[str, Any] | None = None
       ) -> Any:
    r = post(client, service, call, param)
    assert r.status_code == 200, r.text
    assert "faultstring" not in r.json()
    return r.json()


def fault(r: httpx.Response, code: str, status: int = 500) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["faultcode"] == code, body
    return str(body["faultstring"])


def cliente(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"codigo_cliente_integracao": f"C{i}", "razao_social": f"EMPRESA {i} LTDA",
            "cnpj_cpf": CNPJ[i % len(CNPJ)], "email": f"c{i}@example.com", **extra}


def produto(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"codigo_produto_integracao": f"P{i}", "codigo": f"SKU-{i}",
            "descricao": f"PRODUTO {i}", "unidade": "UN", "ncm": "9403.30.00",
            "valor_unitario": 10.0 + i, **extra}


def pedido(code: str = "O1", **cab: Any) -> dict[str, Any]:
    return {
        "cabecalho": {"codigo_cliente_integracao": "C0", "codigo_pedido_integracao": code,
                      "data_previsao": "20/03/2026", "etapa": "10", "codigo_parcela": "000",
                      **cab},
        "det": [{"ide": {"codigo_item_integracao": "1"},
                 "produto": {"codigo_produto_integracao": "P0", "quantidade": 2,
                             "valor_unitario": 10.0}},
                {"ide": {"codigo_item_integracao": "2"},
                 "produto": {"codigo_produto_integracao": "P1", "quantidade": 1,
                             "valor_unitario": 11.0}}],
        "informacoes_adicionais": {"codigo_categoria": "1.01.03",
                                   "codigo_conta_corrente": 123, "consumidor_final": "S"},
        "frete": {"modalidade": "9"},
    }


def seed_rows(sim: OmieSim, table: str, stamps: list[tuple[datetime, datetime]]) -> list[int]:
    """Insert rows directly, as the seeder does, with given (created, updated)."""
    ids = []
    for i, (created, updated) in enumerate(stamps):
        row = sim.db[table].insert({"razao_social": f"R{i}", "codigo_cliente_integracao": ""},
                                   created)
        row.updated = updated
        ids.append(row.id)
    return ids


# --- envelope, auth, routing --------------------------------------------------------------

@pytest.mark.parametrize("key,secret", [("999", SECRET), (KEY, "wrong"), ("", "")])
def test_bad_credentials_fault(omie_client: TestClient, key: str, secret: str) -> None:
    text = fault(post(omie_client, CLI, "ListarClientes", key=key, secret=secret),
                 "SOAP-ENV:Client-101")
    assert SECRET not in text and "chave de acesso" in text


def test_trailing_slash_required(omie_client: TestClient, omie_sim: OmieSim) -> None:
    r = omie_client.post("/api/v1/geral/clientes", json={}, follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"].endswith("/api/v1/geral/clientes/")
    assert {"endpoint": "geral/clientes", "status": 301, "count": 1} in omie_sim.requests.as_list()


@pytest.mark.parametrize("body,code,text", [
    (b"{not json", "SOAP-ENV:Client-1", "SyntaxError"),
    (b"[1, 2]", "SOAP-ENV:Client-2", "Invalid JSON Object"),
    (b'{"app_key": "x"}', "SOAP-ENV:Client-2", "Invalid JSON Object"),
])
def test_malformed_requests(omie_client: TestClient, body: bytes, code: str, text: str) -> None:
    r = omie_client.post("/api/v1/geral/clientes/", content=body,
                         headers={"content-type": "application/json"})
    assert text in fault(r, code)


def test_unknown_call_for_the_url(omie_client: TestClient) -> None:
    # a real call, but of another service
    assert "IncluirPedido" in fault(post(omie_client, CLI, "IncluirPedido"), "SOAP-ENV:Client-2")


EVERY_CALL = [
    *((CLI, c) for c in ("ListarClientes", "ListarClientesResumido", "ConsultarCliente",
                         "IncluirCliente", "AlterarCliente", "UpsertCliente",
                         "UpsertClienteCpfCnpj", "ExcluirCliente", "AssociarCodIntCliente",
                         "UpsertClientesPorLote")),
    *((PRO, c) for c in ("ListarProdutos", "ListarProdutosResumido", "ConsultarProduto",
                         "IncluirProduto", "AlterarProduto", "UpsertProduto", "ExcluirProduto",
                         "UpsertProdutosPorLote")),
    *((PED, c) for c in ("ListarPedidos", "ConsultarPedido", "IncluirPedido",
                         "AlterarPedidoVenda", "ExcluirPedido", "StatusPedido",
                         "TrocarEtapaPedido")),
]


@pytest.mark.parametrize("service,call", EVERY_CALL)
def test_every_call_of_each_service_is_answered(omie_client: TestClient, service: str,
                                                call: str) -> None:
    """An empty param reaches the call itself: data or a vendor fault about the param, never
    "method does not exist" nor a crash."""
    r = post(omie_client, service, call, {})
    assert r.status_code in (200, 500), r.text
    body = r.json()
    assert body.get("faultcode") != "SOAP-ENV:Client-2", body
    if r.status_code == 500:
        assert body["faultcode"] in ("SOAP-ENV:Client-1020", "SOAP-ENV:Client-105",
                                     "SOAP-ENV:Client-5113"), body


@pytest.mark.parametrize("service,call,param,tag", [
    (CLI, "ListarClientes", {"nPagina": 1}, "NPAGINA"),
    (CLI, "ListarClientes", {"clientesFiltro": {"cor": "azul"}}, "COR"),
    (PRO, "ListarProdutos", {"clientesFiltro": {}}, "CLIENTESFILTRO"),
    (CLI, "IncluirCliente", {**cliente(), "apelido": "x"}, "APELIDO"),
    (PED, "ListarPedidos", {"pagina": 1, "filtro": 1}, "FILTRO"),
])
def test_unknown_tag_5001(omie_client: TestClient, service: str, call: str,
                          param: dict[str, Any], tag: str) -> None:
    text = fault(post(omie_client, service, call, param), "SOAP-ENV:Client-5001")
    assert f"Tag [{tag}]" in text


def test_get_with_json_query_param(omie_client: TestClient) -> None:
    ok(omie_client, CLI, "IncluirCliente", cliente())
    q = json.dumps({"call": "ListarClientes", "app_key": KEY, "app_secret": SECRET,
                    "param": [{"pagina": 1}]})
    r = omie_client.get("/api/v1/geral/clientes/", params={"JSON": q})
    assert r.status_code == 200 and r.json()["total_de_registros"] == 1


# --- clientes -----------------------------------------------------------------------------

def test_clientes_calls(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.clock.freeze(T0)
    s = ok(omie_client, CLI, "IncluirCliente", cliente(0, cidade="3550308"))
    assert s == {"codigo_cliente_omie": 1, "codigo_cliente_integracao": "C0",
                 "codigo_status": "0", "descricao_status": "Cliente cadastrado com sucesso!"}
    rec = ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1})
    assert rec["cnpj_cpf"] == "11.222.333/0001-81" and rec["pessoa_fisica"] == "N"
    assert rec["cidade"] == "SÃO PAULO (SP)" and rec["cidade_ibge"] == "3550308"
    assert rec["estado"] == "SP" and rec["inativo"] == "N"
    assert rec["info"] == {"dInc": "10/03/2026", "hInc": "10:00:00", "uInc": "WEBSERVICE",
                           "dAlt": "10/03/2026", "hAlt": "10:00:00", "uAlt": "WEBSERVICE",
                           "cImpAPI": "S"}
    assert ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_integracao": "C0"}) == rec

    omie_sim.clock.freeze(T0 + timedelta(seconds=90))
    ok(omie_client, CLI, "AlterarCliente", {"codigo_cliente_omie": 1, "email": "new@x.com"})
    rec = ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1})
    assert rec["email"] == "new@x.com" and rec["razao_social"] == "EMPRESA 0 LTDA"
    assert (rec["info"]["dInc"], rec["info"]["hInc"]) == ("10/03/2026", "10:00:00")
    assert (rec["info"]["dAlt"], rec["info"]["hAlt"]) == ("10/03/2026", "10:01:30")

    # UpsertCliente keys on the integration code: insert, then update the same record
    s1 = ok(omie_client, CLI, "UpsertCliente", cliente(1))
    s2 = ok(omie_client, CLI, "UpsertCliente", {"codigo_cliente_integracao": "C1",
                                                "nome_fantasia": "FANTASIA"})
    assert s1["codigo_cliente_omie"] == s2["codigo_cliente_omie"] == 2
    # UpsertClienteCpfCnpj keys on the digits of the tax id
    s3 = ok(omie_client, CLI, "UpsertClienteCpfCnpj", {"cnpj_cpf": "11.444.777/0001-61",
                                                       "contato": "Ana"})
    assert s3["codigo_cliente_omie"] == 2
    s4 = ok(omie_client, CLI, "UpsertClienteCpfCnpj", {"cnpj_cpf": CPF, "razao_social": "JOSE"})
    assert s4["codigo_cliente_omie"] == 3
    assert ok(omie_client, CLI, "ConsultarCliente",
              {"codigo_cliente_omie": 3})["pessoa_fisica"] == "S"
    ok(omie_client, CLI, "AssociarCodIntCliente",
       {"codigo_cliente_omie": 3, "codigo_cliente_integracao": "C3"})
    assert ok(omie_client, CLI, "ConsultarCliente",
              {"codigo_cliente_integracao": "C3"})["codigo_cliente_omie"] == 3

    res = ok(omie_client, CLI, "ListarClientesResumido", {"pagina": 1})
    assert [c["codigo_cliente"] for c in res["clientes_cadastro_resumido"]] == [1, 2, 3]
    assert ok(omie_client, CLI, "ExcluirCliente", {"codigo_cliente_omie": 2})["codigo_status"] == "0"
    fault(post(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 2}),
          "SOAP-ENV:Client-105")
    lst = ok(omie_client, CLI, "ListarClientes", {"pagina": 1, "registros_por_pagina": 50})
    assert [c["codigo_cliente_omie"] for c in lst["clientes_cadastro"]] == [1, 3]


def test_upsert_clientes_por_lote(omie_client: TestClient) -> None:
    r = ok(omie_client, CLI, "UpsertClientesPorLote",
           {"lote": 7, "clientes_cadastro": [cliente(0), cliente(1)]})
    assert r["lote"] == 7 and r["codigo_status"] == "0"
    assert ok(omie_client, CLI, "ListarClientes", {})["total_de_registros"] == 2
    too_many = [cliente(i, cnpj_cpf="") for i in range(51)]
    text = fault(post(omie_client, CLI, "UpsertClientesPorLote",
                      {"lote": 8, "clientes_cadastro": too_many}), "SOAP-ENV:Client-1020")
    assert "50" in text


def test_render_truncates_to_the_second_in_brasilia(omie_client: TestClient,
                                                    omie_sim: OmieSim) -> None:
    at = datetime(2026, 3, 10, 2, 59, 59, 999_999, tzinfo=UTC)  # 09/03 23:59:59.999 BRT
    omie_sim.db["clientes"].insert({"razao_social": "SEEDED"}, at)  # the seeder's path
    rec = ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1})
    assert (rec["info"]["dInc"], rec["info"]["hInc"]) == ("09/03/2026", "23:59:59")
    assert rec["info"]["cImpAPI"] == "N" and rec["inativo"] == "N"


# --- produtos -----------------------------------------------------------------------------

def test_produtos_calls(omie_client: TestClient) -> None:
    s = ok(omie_client, PRO, "IncluirProduto", produto(0))
    assert s["codigo_produto"] == 1 and s["codigo_produto_integracao"] == "P0"
    rec = ok(omie_client, PRO, "ConsultarProduto", {"codigo_produto": 1})
    assert rec["descricao"] == "PRODUTO 0" and rec["valor_unitario"] == 10.0
    assert rec["info"]["cImpAPI"] == "S" and rec["inativo"] == "N"
    assert ok(omie_client, PRO, "ConsultarProduto", {"codigo": "SKU-0"}) == rec
    ok(omie_client, PRO, "AlterarProduto", {"codigo_produto": 1, "valor_unitario": "12.5"})
    assert ok(omie_client, PRO, "ConsultarProduto",
              {"codigo_produto_integracao": "P0"})["valor_unitario"] == 12.5
    a = ok(omie_client, PRO, "UpsertProduto", produto(1))
    b = ok(omie_client, PRO, "UpsertProduto", {"codigo_produto_integracao": "P1",
                                               "descricao": "NOVO"})
    assert a["codigo_produto"] == b["codigo_produto"] == 2
    ok(omie_client, PRO, "UpsertProdutosPorLote",
       {"lote": 1, "produto_servico_cadastro": [produto(2), produto(3)]})
    lst = ok(omie_client, PRO, "ListarProdutos", {"pagina": 1})
    assert [p["codigo_produto"] for p in lst["produto_servico_cadastro"]] == [1, 2, 3, 4]
    by_code = ok(omie_client, PRO, "ListarProdutos", {"produtosPorCodigo": [
        {"codigo_produto": 1}, {"codigo_produto_integracao": "P3"}]})
    assert [p["codigo_produto"] for p in by_code["produto_servico_cadastro"]] == [1, 4]
    res = ok(omie_client, PRO, "ListarProdutosResumido", {"filtrar_apenas_descricao": "novo"})
    assert [p["codigo_produto"] for p in res["produto_servico_resumido"]] == [2]
    ok(omie_client, PRO, "ExcluirProduto", {"codigo_produto": 4})
    fault(post(omie_client, PRO, "ConsultarProduto", {"codigo_produto": 4}),
          "SOAP-ENV:Client-105")
    fault(post(omie_client, PRO, "IncluirProduto", produto(0)), "SOAP-ENV:Client-102")


@pytest.mark.parametrize("tag", ["descricao", "unidade", "ncm", "valor_unitario",
                                 "codigo_produto_integracao"])
def test_produto_required_fields(omie_client: TestClient, tag: str) -> None:
    param = {k: v for k, v in produto(0).items() if k != tag}
    assert f"[{tag}]" in fault(post(omie_client, PRO, "IncluirProduto", param),
                               "SOAP-ENV:Client-1020")


# --- pedidos ------------------------------------------------------------------------------

@pytest.fixture
def with_catalog(omie_client: TestClient) -> TestClient:
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    ok(omie_client, PRO, "IncluirProduto", produto(0))
    ok(omie_client, PRO, "IncluirProduto", produto(1))
    return omie_client


def test_pedidos_calls(with_catalog: TestClient) -> None:
    c = with_catalog
    s = ok(c, PED, "IncluirPedido", pedido("O1"))
    assert s == {"codigo_pedido": 1, "codigo_pedido_integracao": "O1", "codigo_status": "0",
                 "descricao_status": "Pedido cadastrado com sucesso!",
                 "numero_pedido": "000000000000001"}
    rec = ok(c, PED, "ConsultarPedido", {"codigo_pedido": 1})["pedido_venda_produto"]
    cab = rec["cabecalho"]
    assert cab["codigo_pedido"] == 1 and cab["codigo_cliente"] == 1
    assert cab["quantidade_itens"] == 2 and rec["det"][0]["produto"]["codigo_produto"] == 1
    assert rec["det"][0]["produto"]["descricao"] == "PRODUTO 0"
    assert rec["total_pedido"]["valor_total_pedido"] == 31.0
    assert rec["infoCadastro"]["faturado"] == "N" and rec["infoCadastro"]["cancelado"] == "N"
    assert set(rec["infoCadastro"]) >= {"dInc", "hInc", "dAlt", "hAlt", "cImpAPI"}

    ok(c, PED, "AlterarPedidoVenda", {
        "cabecalho": {"codigo_pedido_integracao": "O1", "data_previsao": "25/03/2026"},
        "det": [{"ide": {"codigo_item_integracao": "1"}, "produto": {"quantidade": 5}},
                {"ide": {"codigo_item_integracao": "2", "acao_item": "E"}}]})
    rec = ok(c, PED, "ConsultarPedido", {"codigo_pedido_integracao": "O1"})["pedido_venda_produto"]
    assert rec["cabecalho"]["data_previsao"] == "25/03/2026"
    assert [d["produto"]["quantidade"] for d in rec["det"]] == [5.0]
    assert rec["total_pedido"]["valor_total_pedido"] == 50.0

    ok(c, PED, "IncluirPedido", pedido("O2", codigo_cliente=1, codigo_cliente_integracao=""))
    ok(c, PED, "TrocarEtapaPedido", {"codigo_pedido": 2, "etapa": "20"})
    st = ok(c, PED, "StatusPedido", {"codigo_pedido": 2})
    assert st["etapa"] == "20" and st["numero_pedido"] == "000000000000002"
    lst = ok(c, PED, "ListarPedidos", {"pagina": 1, "etapa": "20"})
    assert [p["cabecalho"]["codigo_pedido"] for p in lst["pedido_venda_produto"]] == [2]
    lst = ok(c, PED, "ListarPedidos", {"filtrar_por_cliente": 1})
    assert lst["total_de_registros"] == 2
    ok(c, PED, "TrocarEtapaPedido", {"codigo_pedido": 2, "etapa": "60"})
    assert ok(c, PED, "ConsultarPedido",
              {"codigo_pedido": 2})["pedido_venda_produto"]["infoCadastro"]["faturado"] == "S"
    fault(post(c, PED, "AlterarPedidoVenda", {"cabecalho": {"codigo_pedido": 2, "etapa": "10"}}),
          "SOAP-ENV:Client-1020")
    ok(c, PED, "ExcluirPedido", {"codigo_pedido": 1})
    fault(post(c, PED, "ConsultarPedido", {"codigo_pedido": 1}), "SOAP-ENV:Client-105")


def _without(order: dict[str, Any], path: str) -> dict[str, Any]:
    block, _, tag = path.partition(".")
    if not tag:
        return {k: v for k, v in order.items() if k != block}
    order[block] = {k: v for k, v in order[block].items() if k != tag}
    return order


@pytest.mark.parametrize("path", [
    "cabecalho.codigo_pedido_integracao", "cabecalho.data_previsao", "cabecalho.etapa",
    "cabecalho.codigo_parcela", "det", "informacoes_adicionais.codigo_categoria",
    "informacoes_adicionais.codigo_conta_corrente", "informacoes_adicionais.consumidor_final",
    "frete.modalidade",
])
def test_pedido_required_fields(with_catalog: TestClient, path: str) -> None:
    text = fault(post(with_catalog, PED, "IncluirPedido", _without(pedido(), path)),
                 "SOAP-ENV:Client-1020")
    assert f"[{path}]" in text


@pytest.mark.parametrize("mutate,code,text", [
    (lambda o: o["cabecalho"].update(codigo_cliente_integracao=""), "SOAP-ENV:Client-1020",
     "[cabecalho.codigo_cliente]"),
    (lambda o: o["cabecalho"].update(codigo_cliente_integracao="NOPE"), "SOAP-ENV:Client-105",
     "[NOPE]"),
    (lambda o: o["det"][0]["produto"].update(codigo_produto_integracao="NOPE"),
     "SOAP-ENV:Client-105", "Produto não cadastrado"),
    (lambda o: o["det"][0]["produto"].pop("quantidade"), "SOAP-ENV:Client-1020",
     "[det.produto.quantidade]"),
    (lambda o: o["det"][0]["ide"].pop("codigo_item_integracao"), "SOAP-ENV:Client-1020",
     "[det.ide.codigo_item_integracao]"),
    (lambda o: o["cabecalho"].update(data_previsao="2026-03-20"), "SOAP-ENV:Client-1020",
     "[cabecalho.data_previsao]"),
    (lambda o: o["cabecalho"].update(codigo_parcela="999"), "SOAP-ENV:Client-1020",
     "[lista_parcelas.parcela]"),
])
def test_pedido_references_and_validation(with_catalog: TestClient, mutate: Any, code: str,
                                          text: str) -> None:
    order = pedido()
    mutate(order)
    assert text in fault(post(with_catalog, PED, "IncluirPedido", order), code)


def test_pedido_duplicate_integration_code_102(with_catalog: TestClient) -> None:
    ok(with_catalog, PED, "IncluirPedido", pedido("O9"))
    text = fault(post(with_catalog, PED, "IncluirPedido", pedido("O9")), "SOAP-ENV:Client-102")
    assert "[O9]" in text and "nCod [1]" in text


# --- paging -------------------------------------------------------------------------------

def test_paging_to_the_end_then_5113(omie_client: TestClient, omie_sim: OmieSim) -> None:
    seed_rows(omie_sim, "clientes", [(T0, T0)] * 7)
    seen, sizes = [], []
    for page in (1, 2, 3):
        r = ok(omie_client, CLI, "ListarClientes", {"pagina": page, "registros_por_pagina": 3})
        assert (r["pagina"], r["total_de_paginas"], r["total_de_registros"]) == (page, 3, 7)
        assert r["registros"] == len(r["clientes_cadastro"])
        sizes.append(r["registros"])
        seen += [c["codigo_cliente_omie"] for c in r["clientes_cadastro"]]
    assert sizes == [3, 3, 1] and seen == list(range(1, 8))
    r = post(omie_client, CLI, "ListarClientes", {"pagina": 4, "registros_por_pagina": 3})
    assert r.json() == {"faultstring": "ERROR: Não existem registros para a página [4]!",
                        "faultcode": "SOAP-ENV:Client-5113"}
    assert r.status_code == 500
    zero = ok(omie_client, CLI, "ListarClientes", {"pagina": 0, "registros_por_pagina": 3})
    assert zero["pagina"] == 1


def test_no_matches_is_5113(omie_client: TestClient) -> None:
    for service, call in [(CLI, "ListarClientes"), (PRO, "ListarProdutos"),
                          (PED, "ListarPedidos")]:
        assert "página [1]" in fault(post(omie_client, service, call, {"pagina": 1}),
                                     "SOAP-ENV:Client-5113")


@pytest.mark.parametrize("cap,asked,n,want_size,want_pages", [
    (None, 500, 120, 100, 2),  # default silent cap 100
    (2, 5, 5, 2, 3),
    (None, 30, 45, 30, 2),
])
def test_page_cap(omie_client: TestClient, omie_sim: OmieSim, cap: int | None, asked: int,
                  n: int, want_size: int, want_pages: int) -> None:
    omie_sim.faults.page_cap = cap
    seed_rows(omie_sim, "clientes", [(T0, T0)] * n)
    r = ok(omie_client, CLI, "ListarClientes", {"pagina": 1, "registros_por_pagina": asked})
    assert (r["registros"], r["total_de_paginas"], r["total_de_registros"]) == \
        (want_size, want_pages, n)


# --- changed-since filters ----------------------------------------------------------------

def window(since: str, until: str | None = None, **flags: str) -> dict[str, Any]:
    """Window params from naive Brasília ``dd/mm/aaaa hh:mm:ss`` strings."""
    p: dict[str, Any] = {"pagina": 1, "registros_por_pagina": 100}
    p["filtrar_por_data_de"], p["filtrar_por_hora_de"] = since.split()
    if until:
        p["filtrar_por_data_ate"], p["filtrar_por_hora_ate"] = until.split()
    return {**p, **flags}


def listed_ids(client: TestClient, param: dict[str, Any]) -> list[int]:
    r = post(client, CLI, "ListarClientes", param)
    if r.status_code == 500 and r.json().get("faultcode") == "SOAP-ENV:Client-5113":
        return []
    assert r.status_code == 200, r.text
    return [c["codigo_cliente_omie"] for c in r.json()["clientes_cadastro"]]


def test_window_edges_are_inclusive_at_second_precision(omie_client: TestClient,
                                                        omie_sim: OmieSim) -> None:
    s = timedelta(seconds=1)
    ms = timedelta(milliseconds=999)
    stamps = [T0 - s, T0, T0 + ms, T0 + 10 * s, T0 + 10 * s + ms, T0 + 11 * s]
    seed_rows(omie_sim, "clientes", [(t, t) for t in stamps])
    # T0 = 10/03/2026 10:00:00 BRT; the window [10:00:00, 10:00:10] in Brasília time
    got = listed_ids(omie_client, window("10/03/2026 10:00:00", "10/03/2026 10:00:10",
                                         filtrar_apenas_alteracao="S"))
    assert got == [2, 3, 4, 5]


def test_window_date_crosses_midnight(omie_client: TestClient, omie_sim: OmieSim) -> None:
    late = datetime(2026, 3, 11, 2, 30, tzinfo=UTC)  # 10/03/2026 23:30:00 BRT
    seed_rows(omie_sim, "clientes", [(late, late)])
    assert listed_ids(omie_client, window("10/03/2026 23:00:00", "10/03/2026 23:59:59")) == [1]
    assert listed_ids(omie_client, window("11/03/2026 00:00:00")) == []


def test_shared_second_across_page_boundary(omie_client: TestClient, omie_sim: OmieSim) -> None:
    seed_rows(omie_sim, "clientes", [(T0, T0 + timedelta(microseconds=i)) for i in range(8)])
    seen: list[int] = []
    for page in (1, 2, 3):
        p = {**window("10/03/2026 10:00:00", "10/03/2026 10:00:00",
                      filtrar_apenas_alteracao="S"), "pagina": page, "registros_por_pagina": 3}
        seen += listed_ids(omie_client, p)
    assert sorted(seen) == list(range(1, 9)) and len(seen) == len(set(seen))


@pytest.mark.parametrize("flags,want", [
    ({}, [1, 2]),  # included OR altered in the window
    ({"filtrar_apenas_alteracao": "S"}, [1, 2]),  # dAlt in window (new records: dAlt = dInc)
    ({"filtrar_apenas_inclusao": "S"}, [2]),  # dInc in window only
    ({"filtrar_apenas_inclusao": "N", "filtrar_apenas_alteracao": "N"}, [1, 2]),
])
def test_inclusao_alteracao_semantics(omie_client: TestClient, omie_sim: OmieSim,
                                      flags: dict[str, str], want: list[int]) -> None:
    before, inside = T0 - timedelta(days=3), T0 + timedelta(minutes=5)
    seed_rows(omie_sim, "clientes", [(before, inside), (inside, inside), (before, before)])
    assert listed_ids(omie_client, window("10/03/2026 10:00:00", **flags)) == want


def test_window_needs_flag_knob(omie_client: TestClient, omie_sim: OmieSim) -> None:
    old = T0 - timedelta(days=30)
    seed_rows(omie_sim, "clientes", [(old, old), (T0, T0)])
    assert listed_ids(omie_client, window("10/03/2026 09:00:00")) == [2]
    omie_sim.faults.window_needs_flag = True
    assert listed_ids(omie_client, window("10/03/2026 09:00:00")) == [1, 2]
    assert listed_ids(omie_client, window("10/03/2026 09:00:00",
                                          filtrar_apenas_alteracao="S")) == [2]


def test_bad_window_format_names_the_tag(omie_client: TestClient) -> None:
    text = fault(post(omie_client, CLI, "ListarClientes", {"filtrar_por_data_de": "2026-03-10"}),
                 "SOAP-ENV:Client-1020")
    assert "[filtrar_por_data_de]" in text


def test_clientes_filtro_and_por_codigo(omie_client: TestClient) -> None:
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    ok(omie_client, CLI, "IncluirCliente", cliente(1, inativo="S"))
    ok(omie_client, CLI, "IncluirCliente", cliente(2, email="vendas@acme.com.br"))

    def ids(param: dict[str, Any]) -> list[int]:
        return listed_ids(omie_client, {"pagina": 1, **param})

    assert ids({"clientesFiltro": {"cnpj_cpf": "11444777000161"}}) == [2]  # digits vs punctuated
    assert ids({"clientesFiltro": {"cnpj_cpf": "11.444.777/0001-61"}}) == [2]
    assert ids({"clientesFiltro": {"codigo_cliente_integracao": "C2"}}) == [3]
    assert ids({"clientesFiltro": {"razao_social": "empresa 1"}}) == [2]
    assert ids({"clientesFiltro": {"email": "acme"}}) == [3]
    assert ids({"clientesFiltro": {"inativo": "S"}}) == [2]
    assert ids({"clientesPorCodigo": [{"codigo_cliente_omie": 1},
                                      {"codigo_cliente_integracao": "C2"}]}) == [1, 3]


# --- validation faults --------------------------------------------------------------------

@pytest.mark.parametrize("param,tag", [
    ({"codigo_cliente_integracao": "X"}, "razao_social"),
    (cliente(0, cnpj_cpf="11222333000182"), "cnpj_cpf"),  # bad CNPJ check digit
    (cliente(0, cnpj_cpf="52998224724"), "cnpj_cpf"),  # bad CPF check digit
    (cliente(0, cnpj_cpf="123"), "cnpj_cpf"),
    (cliente(0, razao_social="R" * 61), "razao_social"),
    (cliente(0, nome_fantasia="N" * 101), "nome_fantasia"),
    (cliente(0, email="e" * 501), "email"),
    (cliente(0, estado="SPX"), "estado"),
    (cliente(0, cidade="C" * 41), "cidade"),
    (cliente(0, cep="12345-678901"), "cep"),
    (cliente(0, codigo_cliente_integracao="I" * 61), "codigo_cliente_integracao"),
])
def test_cliente_validation_faults(omie_client: TestClient, param: dict[str, Any],
                                   tag: str) -> None:
    text = fault(post(omie_client, CLI, "IncluirCliente", param), "SOAP-ENV:Client-1020")
    assert f"tag [{tag}]" in text


def test_length_limits_are_inclusive(omie_client: TestClient) -> None:
    ok(omie_client, CLI, "IncluirCliente", cliente(0, razao_social="R" * 60,
                                                   codigo_cliente_integracao="I" * 60))


def test_duplicate_and_not_found(omie_client: TestClient, omie_sim: OmieSim) -> None:
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    text = fault(post(omie_client, CLI, "IncluirCliente", cliente(0, cnpj_cpf="")),
                 "SOAP-ENV:Client-102")
    assert text == "ERROR: Cliente já cadastrado para o Código de Integração [C0] com o nCod [1] !"
    text = fault(post(omie_client, CLI, "IncluirCliente",
                      cliente(5, cnpj_cpf="11.222.333/0001-81")), "SOAP-ENV:Client-102")
    assert "CPF/CNPJ" in text and "[1]" in text
    omie_sim.faults.unique_cnpj_cpf = False
    ok(omie_client, CLI, "IncluirCliente", cliente(5, cnpj_cpf="11.222.333/0001-81"))
    for call, param, text in [
        ("ConsultarCliente", {"codigo_cliente_omie": 999}, "[999]"),
        ("AlterarCliente", {"codigo_cliente_integracao": "NOPE", "email": "x@y"}, "[NOPE]"),
        ("ExcluirCliente", {"codigo_cliente_omie": 999}, "[999]"),
    ]:
        assert text in fault(post(omie_client, CLI, call, param), "SOAP-ENV:Client-105")


# --- throttling ---------------------------------------------------------------------------

def test_redundant_call_rule(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.redundant_rule = True
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    ok(omie_client, CLI, "ListarClientes", {"pagina": 1})
    text = fault(post(omie_client, CLI, "ListarClientes", {"pagina": 1}), "SOAP-ENV:Client-6")
    assert text.startswith("Consumo redundante detectado. Aguarde ")
    assert text.endswith(" segundos para uma nova requisição.")
    ok(omie_client, CLI, "ListarClientes", {"pagina": 1, "registros_por_pagina": 10})  # differs
    ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1})  # not a list call
    ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1})
    omie_client.post("/_sandbox/clock", json={"advance_s": 61})
    ok(omie_client, CLI, "ListarClientes", {"pagina": 1})


def test_redundant_rule_knob_off(omie_client: TestClient) -> None:
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    for _ in range(3):
        ok(omie_client, CLI, "ListarClientes", {"pagina": 1})


def test_rate_limit_small_rpm() -> None:
    sim = OmieSim(rpm=3)
    with TestClient(create_app(sim)) as client:
        for _ in range(3):
            post(client, CLI, "ListarClientesResumido", {"pagina": 1})
        r = post(client, CLI, "ListarClientesResumido", {"pagina": 1})
        assert r.status_code == 429 and r.text == "Too many Requests"
        assert int(r.headers["Retry-After"]) >= 1
        # the bucket is per app key + method
        assert post(client, CLI, "ListarClientes", {"pagina": 1}).status_code != 429
    assert {"endpoint": "geral/clientes/ListarClientesResumido", "status": 429,
            "count": 1} in sim.requests.as_list()


def test_rate_limit_default_240(omie_client: TestClient) -> None:
    statuses = [post(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1}).status_code
                for _ in range(241)]
    assert 429 not in statuses[:240] and statuses[240] == 429


def test_misuse_block_knob(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.misuse_after = 3
    for _ in range(3):
        fault(post(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 9}),
              "SOAP-ENV:Client-105")
    text = fault(post(omie_client, CLI, "ListarClientes", {}), "MISUSE_API_PROCESS", 425)
    assert "API bloqueada por consumo indevido" in text
    omie_sim.clock.advance(omie_sim.faults.misuse_block_s + 1)
    fault(post(omie_client, CLI, "ListarClientes", {}), "SOAP-ENV:Client-5113")


# --- fault knobs --------------------------------------------------------------------------

def test_error_rate(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.error_rate = 1.0
    assert "Erro interno" in fault(post(omie_client, CLI, "ListarClientes", {}), "SOAP-ENV:Server")


def test_burst_429(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.burst_429 = 2
    codes = [post(omie_client, CLI, "IncluirCliente", cliente(i)).status_code for i in range(3)]
    assert codes == [429, 429, 200]


def test_drop_rate_in_process(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.drop_rate = 1.0
    with pytest.raises(httpx.TransportError):
        post(omie_client, CLI, "ListarClientes", {})
    assert {"endpoint": "geral/clientes/ListarClientes", "status": 0,
            "count": 1} in omie_sim.requests.as_list()


def test_latency_and_same_timestamp(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.latency_ms = 5
    omie_sim.faults.same_timestamp = True
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    omie_sim.clock.advance(3600)
    ok(omie_client, CLI, "IncluirCliente", cliente(1))
    a, b = (ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": i})["info"]
            for i in (1, 2))
    assert (a["dInc"], a["hInc"]) == (b["dInc"], b["hInc"])


def test_write_faults_http200_knob(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_sim.faults.write_faults_http200 = True
    fault(post(omie_client, CLI, "IncluirCliente", {"email": "x@y"}), "SOAP-ENV:Client-1020", 200)
    fault(post(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 5}),
          "SOAP-ENV:Client-105", 500)


@pytest.fixture
def omie_server() -> Iterator[tuple[str, OmieSim]]:
    """A real uvicorn server on a free loopback port."""
    sim = OmieSim()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(sim), log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", sim
    server.should_exit = True
    thread.join(5)


def test_network_faults_over_uvicorn(omie_server: tuple[str, OmieSim]) -> None:
    url, sim = omie_server
    with httpx.Client(base_url=url, timeout=5) as client:
        assert post(client, CLI, "IncluirCliente", cliente(0)).status_code == 200
        sim.faults.drop_rate = 1.0
        with pytest.raises(httpx.RemoteProtocolError):
            post(client, CLI, "ListarClientes", {})
        sim.faults.drop_rate = 0.0
        sim.faults.timeout_rate, sim.faults.timeout_s = 1.0, 0.5
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/v1/geral/clientes/", timeout=0.05, json={
                "call": "ListarClientes", "app_key": KEY, "app_secret": SECRET, "param": [{}]})
        sim.faults.timeout_rate = 0.0
        assert post(client, CLI, "ListarClientes", {"pagina": 1}).status_code == 200


# --- admin API, counts, concurrency, persistence ------------------------------------------

def test_admin_api(omie_client: TestClient, omie_sim: OmieSim) -> None:
    omie_client.post("/_sandbox/clock", json={"freeze": T0.isoformat()})
    r = omie_client.post("/_sandbox/clientes", json={"razao_social": "UI LTDA",
                                                     "codigo_cliente_omie": 77})
    assert r.status_code == 201
    rec = r.json()
    assert rec["codigo_cliente_omie"] == 1 and rec["info"]["cImpAPI"] == "N"
    omie_client.post("/_sandbox/clock", json={"freeze": (T0 + timedelta(minutes=1)).isoformat()})
    patched = omie_client.patch("/_sandbox/clientes/1", json={"email": "ui@x.com"}).json()
    assert patched["info"]["hAlt"] == "10:01:00" and patched["info"]["hInc"] == "10:00:00"
    assert ok(omie_client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1}) == patched
    dump = omie_client.get("/_sandbox/clientes").json()
    assert dump["count"] == 1 and dump["records"][0] == patched
    assert omie_client.post("/_sandbox/faults", json={"window_needs_flag": True}).json()[
        "window_needs_flag"] is True
    assert omie_client.post("/_sandbox/faults", json={"nope": 1}).status_code == 400
    counts = omie_client.get("/_sandbox/requests").json()["requests"]
    assert counts == [{"endpoint": "geral/clientes/ConsultarCliente", "status": 200, "count": 1}]
    assert omie_client.delete("/_sandbox/clientes/1").json() == {"deleted": 1}
    omie_client.post("/_sandbox/reset")
    assert omie_sim.faults.window_needs_flag is False and len(omie_sim.db["clientes"]) == 0


def test_concurrent_writes_get_distinct_ids(omie_client: TestClient) -> None:
    results: list[int] = []

    def work(i: int) -> None:
        r = post(omie_client, CLI, "IncluirCliente", cliente(i, cnpj_cpf=""))
        results.append(r.json()["codigo_cliente_omie"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 13))


def test_persistence_round_trip(tmp_path: Any) -> None:
    path = str(tmp_path / "omie.db")
    sim = OmieSim(db_path=path)
    with TestClient(create_app(sim)) as client:
        ok(client, CLI, "IncluirCliente", cliente(0))
        before = ok(client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1})
        client.post("/_sandbox/save")
    with TestClient(create_app(OmieSim(db_path=path))) as client:
        assert ok(client, CLI, "ConsultarCliente", {"codigo_cliente_omie": 1}) == before


def test_listar_vendedores_lists_the_sellers_with_their_emails() -> None:
    from starlette.testclient import TestClient

    from etl.sandbox.omie import OmieSim, create_app

    sim = OmieSim()
    client = TestClient(create_app(sim))
    answer = client.post("/api/v1/geral/vendedores/", json={
        "call": "ListarVendedores", "app_key": sim.app_key, "app_secret": sim.app_secret,
        "param": [{"pagina": 1, "registros_por_pagina": 50}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total_de_registros"] == 2
    assert {s["email"].lower() for s in body["cadastro"]} == {"ana.souza@example.com.br",
                                                               "integracao@example.com.br"}
    assert all(isinstance(s["codigo"], int) for s in body["cadastro"])
