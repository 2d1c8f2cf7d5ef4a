"""The sandbox simulators' address and credentials. The built-in connector specs carry the same
values as their defaults, so that a fresh checkout talks to ``ponte sandbox`` as it starts."""

from __future__ import annotations

SANDBOX_CRM_URL = "http://127.0.0.1:8701"
SANDBOX_ERP_URL = "http://127.0.0.1:8702/api/v1"
SANDBOX_USER_KEY = "sandbox-ploomes-user-key"
SANDBOX_APP_KEY = "1000000000001"
SANDBOX_APP_SECRET = "sandbox-omie-app-secret"

__all__ = ["SANDBOX_APP_KEY", "SANDBOX_APP_SECRET", "SANDBOX_CRM_URL", "SANDBOX_ERP_URL",
           "SANDBOX_USER_KEY"]
