"""The state store: what ponte remembers between runs (see ``store``)."""

from __future__ import annotations

from etl.errors import StateConflict
from etl.state.store import (
    BindingRow,
    Checkpoint,
    IntentRow,
    QuarantineEntry,
    QuarantineRow,
    RunRow,
    SnapshotRow,
    Store,
    WatermarkRow,
    quarantine_backoff,
)

__all__ = [
    "BindingRow",
    "Checkpoint",
    "IntentRow",
    "QuarantineEntry",
    "QuarantineRow",
    "RunRow",
    "SnapshotRow",
    "StateConflict",
    "Store",
    "WatermarkRow",
    "quarantine_backoff",
]
