"""The ``geral/produtos/`` calls: list, look up, include, change, upsert, delete."""

from __future__ import annotations

from typing import Any

from etl.sandbox.omie.records import PRODUTOS, OmieRecords
from etl.sandbox.omie.validation import (
    F_NOT_FOUND,
    PRODUTO_FIELDS,
    PRODUTO_LENGTHS,
    PRODUTOS_LIST,
    OmieFault,
    check_lengths,
    check_tags,
    fault_missing,
    number,
)
from etl.sandbox.tables import Row


class ProdutosCalls(OmieRecords):
    """Products (reference B6)."""

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

    def incluir_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        data = self._clean_produto(p, inclusion=True)
        self._check_int_free(PRODUTOS, data)
        row = self._insert(PRODUTOS, data)
        return self._status(PRODUTOS, row, "Produto cadastrado com sucesso!")

    def alterar_produto(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, PRODUTO_FIELDS, "produto_servico_cadastro")
        row = self._locate(PRODUTOS, p)
        data = self._clean_produto(p, inclusion=False)
        self._check_int_free(PRODUTOS, data, exclude=row.id)
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
