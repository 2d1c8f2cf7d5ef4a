"""Mirroring deletions: linked records that vanished from one side get the mapping's
``deletes`` policy applied on the other side (``deactivate`` or ``delete``; ``ignore`` does
nothing). Shared by ``ponte verify --fix`` (records absent from a full read) and ``ponte serve``
(delete events confirmed by a read by key), with the same guards: never more than
``max_delete_share`` of the linked records at once, and only records ponte linked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from loguru import logger

from etl.connectors.base import Connector, Deactivates, WriteOp
from etl.engine.model import CHUNK
from etl.errors import ConfigError, RecordError
from etl.mapping import EntityMapping, MapContext, build_payload
from etl.mapping.models import Side, other
from etl.state import Checkpoint, Store


@dataclass
class Deleted:
    """What applying the policy did: how many were deleted or deactivated, why none were
    (``blocked``), and each one that failed (crm key, erp key, the error)."""

    done: int = 0
    blocked: str | None = None
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def apply_deletes(m: EntityMapping, connectors: dict[Side, Connector], store: Store,
                  ctx: MapContext, vanished: list[tuple[str, str, Side]], n_links: int, *,
                  max_delete_share: float, run_id: str, now: datetime,
                  allowed: int = 0) -> Deleted:
    """Apply ``m.deletes`` to the partners of ``vanished`` links (crm key, erp key, the side
    the record vanished from), checkpointed a chunk at a time: a deleted pair's link and
    snapshots go, a deactivated one keeps its link as a tombstone. ``n_links``: how many
    linked records the entity has (the share guard's base); ``allowed``: this many are never
    held back by the share (delete events: one record the system announced and a read by key
    confirmed gone is not a listing gone wrong, however small the account). Raises :class:`ConfigError` when
    ``deactivate`` has no way to deactivate."""
    out = Deleted()
    if not vanished or m.deletes == "ignore":
        return out
    share = len(vanished) / max(n_links, 1)
    if share > max_delete_share and len(vanished) > allowed:
        out.blocked = (
            f"{len(vanished)} of {n_links} linked {m.entity} ({share:.0%}) vanished from one "
            f"side; applying '{m.deletes}' to them exceeds PONTE_MAX_DELETE_SHARE="
            f"{max_delete_share:.0%}. Nothing was deleted or deactivated: check that the source "
            "was read correctly, then raise the limit for one run if this is intended"
        )
        logger.bind(entity=m.entity).warning(out.blocked)
        return out
    spec_op = {s: isinstance(c, Deactivates) and c.can_deactivate(m.entity)
               for s, c in connectors.items()}
    if m.deletes == "deactivate" and not m.deactivate:
        lacking = sorted({other(gone) for *_, gone in vanished} - {s for s in spec_op if spec_op[s]})
        if lacking:
            raise ConfigError(f"{m.entity}: 'deletes: deactivate' but the mapping has no "
                              f"'deactivate' block and the {', '.join(lacking)} connector's spec "
                              "has no deactivate request: add either")
    cp = Checkpoint(m.entity)
    for crm_key, erp_key, gone in vanished:
        if len(cp.drop_snapshots) >= CHUNK:  # each chunk of deletes with its checkpoint
            store.checkpoint(cp, now=now, run_id=run_id)
            cp = Checkpoint(m.entity)
        target: Side = other(gone)
        target_key = erp_key if target == "erp" else crm_key
        error = _apply_one(m, connectors[target], target, target_key, ctx,
                           spec_op=spec_op[target])
        if error is not None:
            out.failed.append((crm_key, erp_key, str(error)))
            continue
        out.done += 1
        cp.drop_snapshots.append((gone, crm_key if gone == "crm" else erp_key))
        if m.deletes == "delete":
            cp.drop_links.append((crm_key, erp_key))
            cp.drop_snapshots.append((target, target_key))
        else:
            cp.tombstones.append((crm_key, erp_key, gone))
    store.checkpoint(cp, now=now, run_id=run_id)
    return out


def _apply_one(m: EntityMapping, conn: Connector, target: Side, key: str, ctx: MapContext, *,
               spec_op: bool) -> Exception | None:
    """Delete or deactivate one record of ``target``; the error, if it failed."""
    if m.deletes == "delete":
        return conn.delete(m.entity, key)
    if spec_op and isinstance(conn, Deactivates):
        return conn.deactivate(m.entity, key)
    try:
        payload = build_payload(m, target, dict(m.deactivate), ctx, create=False)
    except RecordError as exc:
        return exc
    return conn.write_batch(m.entity, [WriteOp("update", payload, key=key)])[0].error


__all__ = ["Deleted", "apply_deletes"]
