"""The ``produtos/pedido/`` calls: sales orders listed, looked up, included, changed, deleted,
their status read and their stage moved."""

from __future__ import annotations

import copy
from typing import Any

from etl.sandbox.omie.records import CLIENTES, PEDIDOS, PRODUTOS, OmieRecords
from etl.sandbox.omie.validation import (
    F_NOT_FOUND,
    F_VALIDATION,
    PEDIDO_BLOCKS,
    PEDIDOS_LIST,
    OmieFault,
    check_tags,
    fault_missing,
    number,
    parse_date,
)
from etl.sandbox.tables import Row


class PedidosCalls(OmieRecords):
    """Sales orders."""

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
        self._check_int_free(PEDIDOS, cab)
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
        self.db["pedidos"].replace(row.id, data, self.write_instant())
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
