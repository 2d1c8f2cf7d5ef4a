"""ponte: keeps a CRM and an ERP in agreement."""

from __future__ import annotations

__version__ = "0.1.0"
