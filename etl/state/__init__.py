"""The state store: what ponte remembers between runs (see ``store``)."""

from __future__ import annotations

from etl.errors import StateConflict
from etl.state.alerts import AlertRow, Transition
from etl.state.rows import (
    BindingRow,
    Checkpoint,
    IntentRow,
    QuarantineEntry,
    QuarantineRow,
    RunRow,
    SnapshotRow,
    WatermarkRow,
    quarantine_backoff,
)
from etl.state.store import Store

__all__ = [
    "AlertRow",
    "BindingRow",
    "Checkpoint",
    "IntentRow",
    "QuarantineEntry",
    "QuarantineRow",
    "RunRow",
    "SnapshotRow",
    "StateConflict",
    "Store",
    "Transition",
    "WatermarkRow",
    "quarantine_backoff",
]
