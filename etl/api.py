"""Library entry points behind the CLI: each builds what it needs from Settings, does one thing,
and returns a result object."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx

from etl.connectors.base import Connector
from etl.connectors.factory import build_connectors
from etl.engine import Options, RunReport, run_sync
from etl.engine.verify import VerifyReport
from etl.engine.verify import verify as run_verify
from etl.mapping import EntityMapping, load_mappings
from etl.mapping.models import Side
from etl.settings import Settings
from etl.state.store import Store


def options_from(settings: Settings, **overrides: object) -> Options:
    opt = Options(
        lookback=timedelta(seconds=settings.lookback_s),
        safety_lag=timedelta(seconds=settings.safety_lag_s),
        lease_s=float(settings.lock_lease_s),
    )
    for k, v in overrides.items():
        setattr(opt, k, v)
    return opt


@contextmanager
def session(
    settings: Settings,
    *,
    crm_client: httpx.Client | None = None,
    erp_client: httpx.Client | None = None,
) -> Iterator[tuple[Store, dict[Side, Connector], dict[str, EntityMapping]]]:
    """Validated mappings, an open state store and both connectors — config errors first,
    before anything is written."""
    mappings = load_mappings(settings.mappings_dir)
    connectors = build_connectors(settings, crm_client=crm_client, erp_client=erp_client)
    store = Store.open(settings.state_url)
    try:
        yield store, connectors, mappings
    finally:
        store.close()
        for c in connectors.values():
            c.close()


def sync(
    settings: Settings,
    entities: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    crm_client: httpx.Client | None = None,
    erp_client: httpx.Client | None = None,
    now: Callable[[], datetime] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunReport:
    """One incremental run (what cron calls); ``dry_run`` = plan: writes nothing anywhere.
    ``should_stop`` is asked between pages and chunks (a signal): the run then ends as
    ``stopped`` with whole chunks kept."""
    with session(settings, crm_client=crm_client, erp_client=erp_client) as (store, conns, maps):
        if entities:
            load_mappings(settings.mappings_dir, list(entities))  # names unknown entities
        return run_sync(
            store=store, connectors=conns, mappings=maps, entities=entities or None,
            kind="plan" if dry_run else "sync",
            options=options_from(settings, dry_run=dry_run, should_stop=should_stop),
            **({"now": now} if now is not None else {}),
        )


def verify(
    settings: Settings,
    entities: Sequence[str] | None = None,
    *,
    fix: bool = False,
    crm_client: httpx.Client | None = None,
    erp_client: httpx.Client | None = None,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> VerifyReport:
    """Read both systems in full and report every drift; ``fix`` repairs what the mappings
    allow (deletes and deactivations only within PONTE_MAX_DELETE_SHARE). ``should_stop``
    ends it between pages and chunks: :class:`etl.engine.entity.Stopped` is raised."""
    with session(settings, crm_client=crm_client, erp_client=erp_client) as (store, conns, maps):
        if entities:
            maps = load_mappings(settings.mappings_dir, list(entities))
        return run_verify(store=store, connectors=conns, mappings=maps,
                          entities=list(entities) if entities else None, fix=fix,
                          max_delete_share=settings.max_delete_share, now=now,
                          should_stop=should_stop)
