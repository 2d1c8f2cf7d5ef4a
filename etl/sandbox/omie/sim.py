"""The Omie simulator: every call of the three services, and one request answered end to end
(envelope, credentials, rate limit, the redundant-call rule, the misuse block)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from etl import settings
from etl.sandbox.omie.calls_clientes import ClientesCalls
from etl.sandbox.omie.calls_pedidos import PedidosCalls
from etl.sandbox.omie.calls_produtos import ProdutosCalls
from etl.sandbox.omie.validation import (
    F_CREDENTIALS,
    F_ENVELOPE,
    F_MISUSE,
    F_REDUNDANT,
    F_SYNTAX,
    REDUNDANT_WINDOW_S,
    OmieFault,
)


class OmieSim(ClientesCalls, ProdutosCalls, PedidosCalls):
    """State and behaviour of the Omie API; ``create_app`` wraps it in ASGI."""

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
        super().__init__(app_key=app_key, app_secret=app_secret, rpm=rpm, db_path=db_path,
                         seed=seed)
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
