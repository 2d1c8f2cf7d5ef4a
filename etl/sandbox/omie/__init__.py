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

Modules: ``validation`` (fault codes, field tables, parameter checks), ``records`` (state,
rendering, lookups, list machinery), ``calls_clientes`` / ``calls_produtos`` / ``calls_pedidos``
(one service each), ``hooks`` (the webhook configuration and messages, reference B9), ``sim``
(the simulator and one request end to end), ``app`` (the ASGI shell).
"""

from __future__ import annotations

from etl.sandbox.core import DroppedConnection
from etl.sandbox.omie.app import create_app
from etl.sandbox.omie.sim import OmieSim
from etl.sandbox.omie.validation import OmieFault

__all__ = ["DroppedConnection", "OmieFault", "OmieSim", "create_app"]
