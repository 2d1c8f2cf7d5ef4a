"""The ``geral/clientes/`` calls: list, look up, include, change, upsert, delete, associate."""

from __future__ import annotations

from typing import Any

from stdnum.br import cnpj as br_cnpj
from stdnum.br import cpf as br_cpf

from etl.sandbox.geo import CITIES, CITY_BY_IBGE
from etl.sandbox.omie.records import CLIENTES, OmieRecords
from etl.sandbox.omie.validation import (
    CLIENTE_FIELDS,
    CLIENTE_FILTRO,
    CLIENTE_LENGTHS,
    CLIENTES_LIST,
    F_DUPLICATE,
    F_VALIDATION,
    UFS,
    OmieFault,
    check_lengths,
    check_tags,
    digits,
    fault_missing,
)
from etl.sandbox.tables import Row


class ClientesCalls(OmieRecords):
    """Customers (reference B3)."""

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
        rows = [self.render("clientes", r) for r in chunk]
        if str(p.get("exibir_caracteristicas") or "").upper() != "S":  # listed only when asked
            for row in rows:
                row.pop("caracteristicas", None)
        return {**head, "clientes_cadastro": rows}

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
        self._check_int_free(CLIENTES, data, exclude=exclude)
        doc = digits(data.get("cnpj_cpf"))
        if doc and self.faults.unique_cnpj_cpf:
            for row in self.db["clientes"]:
                if row.id != exclude and digits(row.data.get("cnpj_cpf")) == doc:
                    raise OmieFault(F_DUPLICATE, f"ERROR: Cliente já cadastrado para o CPF/CNPJ "
                                                 f"[{data['cnpj_cpf']}] com o Id [{row.id}] !")

    def incluir_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        data = self._clean_cliente(p, inclusion=True)
        self._check_unique_cliente(data)
        row = self._insert(CLIENTES, data)
        return self._status(CLIENTES, row, "Cliente cadastrado com sucesso!")

    def alterar_cliente(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, CLIENTE_FIELDS, "clientes_cadastro")
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

    def upsert_clientes_por_lote(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._lote(p, "clientes_cadastro", self.upsert_cliente)
