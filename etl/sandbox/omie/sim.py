"""The Omie simulator: every call of the three services, and one request answered end to end
(envelope, credentials, rate limit, the redundant-call rule, the misuse block)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from etl.sandbox.omie.calls_clientes import ClientesCalls
from etl.sandbox.omie.calls_pedidos import PedidosCalls
from etl.sandbox.omie.calls_produtos import ProdutosCalls
from etl.sandbox.omie.calls_vendedores import VendedoresCalls
from etl.sandbox.omie.hooks import OmieHooks
from etl.sandbox.omie.validation import (
    F_CREDENTIALS,
    F_ENVELOPE,
    F_MISUSE,
    F_REDUNDANT,
    F_SYNTAX,
    REDUNDANT_WINDOW_S,
    OmieFault,
)

#: Each service's calls, and the method of :class:`OmieSim` that answers each one.
CALLS: dict[str, dict[str, str]] = {
    "geral/clientes": {
        "ListarClientes": "listar_clientes",
        "ListarClientesResumido": "listar_clientes_resumido",
        "ConsultarCliente": "consultar_cliente",
        "IncluirCliente": "incluir_cliente",
        "AlterarCliente": "alterar_cliente",
        "UpsertCliente": "upsert_cliente",
        "UpsertClienteCpfCnpj": "upsert_cliente_cpf_cnpj",
        "ExcluirCliente": "excluir_cliente",
        "AssociarCodIntCliente": "associar_cod_int_cliente",
        "UpsertClientesPorLote": "upsert_clientes_por_lote",
    },
    "geral/produtos": {
        "ListarProdutos": "listar_produtos",
        "ListarProdutosResumido": "listar_produtos_resumido",
        "ConsultarProduto": "consultar_produto",
        "IncluirProduto": "incluir_produto",
        "AlterarProduto": "alterar_produto",
        "UpsertProduto": "upsert_produto",
        "ExcluirProduto": "excluir_produto",
        "UpsertProdutosPorLote": "upsert_produtos_por_lote",
    },
    "produtos/pedido": {
        "ListarPedidos": "listar_pedidos",
        "ConsultarPedido": "consultar_pedido",
        "IncluirPedido": "incluir_pedido",
        "AlterarPedidoVenda": "alterar_pedido",
        "ExcluirPedido": "excluir_pedido",
        "StatusPedido": "status_pedido",
        "TrocarEtapaPedido": "trocar_etapa_pedido",
    },
    "geral/vendedores": {"ListarVendedores": "listar_vendedores"},
}


class OmieSim(OmieHooks, ClientesCalls, ProdutosCalls, PedidosCalls, VendedoresCalls):
    """State and behaviour of the Omie API; ``create_app`` wraps it in ASGI."""

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
        method = CALLS[service].get(call)
        if method is None:
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
        handler: Callable[[dict[str, Any]], Any] = getattr(self, method)
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
