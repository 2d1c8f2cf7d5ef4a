"""Omie webhooks: the developer portal's configuration through the admin API, and messages
delivered over real HTTP to a receiver on loopback, FIFO per URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from etl.sandbox import keys
from etl.sandbox.omie import OmieSim, create_app
from etl.sandbox.server import running_sandbox
from tests.sandbox.receiver import Receiver

CLI, PRO, PED = "geral/clientes", "geral/produtos", "produtos/pedido"


@pytest.fixture
def omie_sim() -> OmieSim:
    sim = OmieSim()
    sim.faults.redundant_rule = False
    return sim


@pytest.fixture
def omie_client(omie_sim: OmieSim) -> Iterator[TestClient]:
    with TestClient(create_app(omie_sim)) as client:
        yield client


def ok(client: httpx.Client, service: str, call: str, param: dict[str, Any]) -> Any:
    body = {"call": call, "app_key": keys.SANDBOX_APP_KEY, "app_secret": keys.SANDBOX_APP_SECRET,
            "param": [param]}
    r = client.post(f"/api/v1/{service}/", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def configure(client: httpx.Client, url: str, topics: list[str] | None = None
              ) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url} if topics is None else {"url": url, "topics": topics}
    r = client.post("/_sandbox/webhooks", json=body)
    assert r.status_code == 201, r.text
    value: dict[str, Any] = r.json()
    return value


def cliente(i: int, **extra: Any) -> dict[str, Any]:
    return {"codigo_cliente_integracao": f"C{i}", "razao_social": f"EMPRESA {i} LTDA",
            "email": f"c{i}@example.com", **extra}


def produto(i: int) -> dict[str, Any]:
    return {"codigo_produto_integracao": f"P{i}", "descricao": f"PRODUTO {i}",
            "unidade": "UN", "ncm": "9403.30.00", "valor_unitario": 10.0 + i}


def pedido(code: str) -> dict[str, Any]:
    return {
        "cabecalho": {"codigo_cliente_integracao": "C0", "codigo_pedido_integracao": code,
                      "data_previsao": "20/03/2026", "etapa": "10", "codigo_parcela": "000"},
        "det": [{"ide": {"codigo_item_integracao": "1"},
                 "produto": {"codigo_produto_integracao": "P0", "quantidade": 2,
                             "valor_unitario": 10.0}}],
        "informacoes_adicionais": {"codigo_categoria": "1.01.03", "codigo_conta_corrente": 123,
                                   "consumidor_final": "S"},
        "frete": {"modalidade": "9"},
    }


def test_portal_configuration_pings_lists_and_removes(omie_client: TestClient,
                                                      receiver: Receiver) -> None:
    made = configure(omie_client, receiver.url(), ["ClienteFornecedor.Alterado", "Produto"])
    assert made["topics"] == ["ClienteFornecedor.Alterado", "Produto"]
    (ping,) = receiver.wait_for(1)
    assert ping.json == {"ping": "omie"}
    listed = omie_client.get("/_sandbox/webhooks").json()
    assert [w["url"] for w in listed["records"]] == [receiver.url()]
    assert omie_client.delete(f"/_sandbox/webhooks/{made['id']}").status_code == 200
    assert omie_client.get("/_sandbox/webhooks").json()["records"] == []
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    assert omie_client.app.state.sim.db["clientes"].listener is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "words"), [
    ({"url": "ftp://x/h"}, "not an http(s) URL"),
    ({}, "not an http(s) URL"),
    ({"url": "http://x/h", "topics": ["Cliente.Alterado"]}, "unknown topic"),
    ({"url": "http://x/h", "topics": "Produto"}, "list of topic names"),
    ({"url": "http://x/h", "events": []}, "unknown field"),
])
def test_portal_refuses_bad_configurations(omie_client: TestClient, body: dict[str, Any],
                                           words: str) -> None:
    r = omie_client.post("/_sandbox/webhooks", json=body)
    assert r.status_code == 400 and words in r.json()["error"]
    assert omie_client.get("/_sandbox/webhooks").json()["records"] == []


def test_clientes_events_in_order_with_the_envelope(omie_client: TestClient,
                                                    omie_sim: OmieSim, receiver: Receiver) -> None:
    configure(omie_client, receiver.url())
    made = ok(omie_client, CLI, "IncluirCliente", cliente(0))
    ok(omie_client, CLI, "AlterarCliente", {"codigo_cliente_integracao": "C0",
                                            "email": "novo@example.com"})
    ok(omie_client, CLI, "ExcluirCliente", {"codigo_cliente_integracao": "C0"})
    hits = receiver.wait_for(4)
    assert hits[0].json == {"ping": "omie"}
    messages = [h.json for h in hits[1:]]
    assert [m["topic"] for m in messages] == ["ClienteFornecedor.Incluido",
                                              "ClienteFornecedor.Alterado",
                                              "ClienteFornecedor.Excluido"]
    assert len({m["messageId"] for m in messages}) == 3
    for m in messages:
        assert m["event"]["codigo_cliente_omie"] == made["codigo_cliente_omie"]
        assert m["event"]["codigo_cliente_integracao"] == "C0"
        assert m["appKey"] == keys.SANDBOX_APP_KEY and m["origin"] == "omie-connect-2.0"
        assert m["appHash"] and keys.SANDBOX_APP_SECRET not in hits[1].body.decode()
        assert m["author"]["name"] == "Integração ponte"
    assert messages[1]["event"]["email"] == "novo@example.com"
    assert omie_sim.deliveries.wait_idle()
    assert omie_sim.deliveries.status()["delivered"] == 4


def test_topics_filter_and_admin_author(omie_client: TestClient, receiver: Receiver) -> None:
    configure(omie_client, receiver.url("/produtos"), ["Produto"])
    configure(omie_client, receiver.url("/alterado"), ["ClienteFornecedor.Alterado"])
    ok(omie_client, PRO, "IncluirProduto", produto(0))
    made = omie_client.post("/_sandbox/clientes", json={"razao_social": "PADARIA LTDA"}).json()
    omie_client.patch(f"/_sandbox/clientes/{made['codigo_cliente_omie']}",
                      json={"email": "p@example.com"})
    produtos = receiver.wait_for(2, "/produtos")
    alterado = receiver.wait_for(2, "/alterado")
    assert [h.json.get("topic") for h in produtos] == [None, "Produto.Incluido"]
    assert produtos[1].json["event"]["codigo_produto_integracao"] == "P0"
    assert produtos[1].json["event"]["codigo_produto"] == 1
    assert alterado[1].json["topic"] == "ClienteFornecedor.Alterado"
    assert alterado[1].json["author"]["name"] == "Ana Souza"  # a person, in the UI


def test_pedido_topics_follow_the_stage(omie_client: TestClient, omie_sim: OmieSim,
                                        receiver: Receiver) -> None:
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    ok(omie_client, PRO, "IncluirProduto", produto(0))
    configure(omie_client, receiver.url(), ["VendaProduto"])
    made = ok(omie_client, PED, "IncluirPedido", pedido("O1"))
    ok(omie_client, PED, "AlterarPedidoVenda", {"cabecalho": {"codigo_pedido_integracao": "O1",
                                                              "data_previsao": "21/03/2026"}})
    ok(omie_client, PED, "TrocarEtapaPedido", {"codigo_pedido": made["codigo_pedido"],
                                               "etapa": "20"})
    ok(omie_client, PED, "TrocarEtapaPedido", {"codigo_pedido": made["codigo_pedido"],
                                               "etapa": "60"})
    ok(omie_client, PED, "ExcluirPedido", {"codigo_pedido": made["codigo_pedido"]})
    hits = receiver.wait_for(6)[1:]
    assert [h.json["topic"] for h in hits] == [
        "VendaProduto.Incluida", "VendaProduto.Alterada", "VendaProduto.EtapaAlterada",
        "VendaProduto.Faturada", "VendaProduto.Excluida"]
    event = hits[3].json["event"]
    assert event["idPedido"] == made["codigo_pedido"] and event["etapa"] == "60"
    assert event["numeroPedido"] == made["numero_pedido"]
    assert event["codigo_pedido_integracao"] == "O1"
    assert event["infoCadastro"]["faturado"] == "S"
    assert hits[1].json["event"]["cabecalho"]["data_previsao"] == "21/03/2026"


def test_fifo_per_url_while_retrying(omie_client: TestClient, omie_sim: OmieSim,
                                     receiver: Receiver) -> None:
    configure(omie_client, receiver.url("/slow"))
    configure(omie_client, receiver.url("/fast"))
    receiver.wait_for(1, "/slow")
    receiver.wait_for(1, "/fast")
    receiver.script["/slow"] = [500, 502]
    for i in range(4):
        ok(omie_client, CLI, "IncluirCliente", cliente(i))
    fast = receiver.wait_for(5, "/fast")
    slow = receiver.wait_for(7, "/slow")
    assert omie_sim.deliveries.wait_idle()
    want = [f"C{i}" for i in range(4)]
    assert [h.json["event"]["codigo_cliente_integracao"] for h in fast[1:]] == want
    codes = [h.json["event"]["codigo_cliente_integracao"] for h in slow[1:]]
    assert codes == ["C0", "C0", "C0", "C1", "C2", "C3"]  # the retried one holds the rest back
    status = omie_sim.deliveries.status()
    assert (status["retried"], status["delivered"]) == (2, 10)


def test_duplicates_keep_the_message_id(omie_client: TestClient, omie_sim: OmieSim,
                                        receiver: Receiver) -> None:
    configure(omie_client, receiver.url())
    receiver.wait_for(1)
    omie_client.post("/_sandbox/faults", json={"webhook_duplicate_rate": 1.0})
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    hits = receiver.wait_for(3)
    assert hits[1].body == hits[2].body


def test_delay_knob_holds_deliveries_without_blocking_the_request(
        omie_client: TestClient, omie_sim: OmieSim, receiver: Receiver) -> None:
    omie_client.post("/_sandbox/faults", json={"webhook_delay_s": 0.4})
    configure(omie_client, receiver.url())
    ok(omie_client, CLI, "IncluirCliente", cliente(0))
    assert receiver.received() == [] and omie_sim.deliveries.pending() == 2
    assert [h.json.get("topic") for h in receiver.wait_for(2)] == [None,
                                                                  "ClienteFornecedor.Incluido"]


def test_real_servers_deliver_and_stop_cleanly(receiver: Receiver) -> None:
    with running_sandbox() as sb:
        with httpx.Client(base_url=sb.erp_url.removesuffix("/api/v1"), timeout=10) as client:
            configure(client, receiver.url())
            ok(client, CLI, "IncluirCliente", cliente(0))
        hits = receiver.wait_for(2)
        thread = sb.erp.deliveries._thread
        assert thread is not None and thread.is_alive()
    assert hits[1].json["topic"] == "ClienteFornecedor.Incluido"
    assert not thread.is_alive()
    assert sb.crm.deliveries._thread is None  # no webhook on the CRM: no thread ever ran
