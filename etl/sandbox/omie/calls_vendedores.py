"""The ``geral/vendedores/`` calls: the account's sellers (``ListarVendedores``), which
``clientes`` name in ``recomendacoes.codigo_vendedor``. The answer's shape (``cadastro``:
``codigo``, ``codInt``, ``nome``, ``email``, ``inativo``) is a sandbox choice [U]."""

from __future__ import annotations

from typing import Any

from etl.sandbox.omie.records import OmieRecords
from etl.sandbox.omie.validation import LIST_COMMON, check_tags


class VendedoresCalls(OmieRecords):
    """Sellers (reference B, lookups needed by orders)."""

    def listar_vendedores(self, p: dict[str, Any]) -> dict[str, Any]:
        check_tags(p, LIST_COMMON, "vendListarRequest")
        rows = self._common_filters(p, list(self.db["vendedores"]))
        head, chunk = self._page(p, rows)
        return {**head, "cadastro": [self.render("vendedores", r) for r in chunk]}
