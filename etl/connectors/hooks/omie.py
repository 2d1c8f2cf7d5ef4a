"""Omie facts a spec cannot say as data."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from etl.connectors.hooks import hook

BRT = ZoneInfo("America/Sao_Paulo")


@hook("omie_redundant_wait")
def redundant_wait(text: str, now: datetime | None = None) -> float:
    """Seconds to wait before repeating a call Omie refused as redundant (the same call within
    60 s): "Aguarde N segundos" -> N + 1; "... tentar novamente às 19:04:08" -> until then
    (Brasília time) + 1, when that is within two minutes; else 61."""
    m = re.search(r"Aguarde (\d+) segundo", text)
    if m:
        return float(m.group(1)) + 1.0
    m = re.search(r"(\d{2}):(\d{2}):(\d{2})", text)
    if m:
        local = (now or datetime.now(UTC)).astimezone(BRT)
        at = local.replace(hour=int(m.group(1)), minute=int(m.group(2)),
                           second=int(m.group(3)), microsecond=0)
        wait = (at - local).total_seconds() % 86400
        if wait <= 120:
            return wait + 1.0
    return 61.0
