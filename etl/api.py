"""Library entry points behind the CLI: each builds what it needs from Settings, does one thing,
and returns a result object."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from etl import binding
from etl.connectors.base import Connector
from etl.connectors.factory import build_connectors
from etl.connectors.schema import SystemSchema, schema_for
from etl.engine import Options, RunReport, run_sync
from etl.engine.verify import VerifyReport
from etl.engine.verify import verify as run_verify
from etl.mapping import EntityMapping, load_mappings
from etl.mapping.loader import unchecked_custom_fields
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


def declared_schemas(settings: Settings) -> dict[Side, SystemSchema]:
    """The field schemas of the systems the settings name (static: no connection)."""
    return {"crm": schema_for(settings.crm.kind), "erp": schema_for(settings.erp.kind)}


def with_custom_fields(schemas: dict[Side, SystemSchema], mappings: dict[str, EntityMapping],
                       connectors: dict[Side, Connector]) -> dict[Side, SystemSchema]:
    """``schemas`` plus the custom fields each system lists (Ploomes ``/Fields``) for the
    collections the mappings use: one read per collection."""
    out = dict(schemas)
    for side, system in schemas.items():
        fetch = getattr(connectors.get(side), "custom_field_keys", None)
        if fetch is None:
            continue
        collections = dict(system.collections)
        for m in mappings.values():
            name = m.systems[side].collection if side in m.systems else None
            if name in system.custom_entity_ids and name in collections:
                assert name is not None
                collections[name] = collections[name].with_custom(
                    fetch(system.custom_entity_ids[name]))
        out[side] = replace(system, collections=collections)
    return out


@dataclass
class MappingCheck:
    """Mappings whose native paths were checked; ``unchecked`` lists the custom fields only the
    system itself can confirm (left when checking offline)."""

    mappings: dict[str, EntityMapping]
    unchecked: list[str]
    online: bool


def check_mappings(settings: Settings, directory: Path | None = None, *, online: bool = False,
                   entities: Sequence[str] | None = None,
                   connectors: dict[Side, Connector] | None = None,
                   crm_client: httpx.Client | None = None,
                   erp_client: httpx.Client | None = None) -> MappingCheck:
    """Load and check the mappings: every native path against the declared field schemas;
    ``online`` (or ``connectors`` given while custom fields are named) also asks the systems
    for their custom fields. Raises :class:`ConfigError` naming each bad path."""
    directory = directory or settings.mappings_dir
    names = list(entities) if entities else None
    schemas = declared_schemas(settings)
    mappings = load_mappings(directory, names, schemas=schemas)
    unchecked = unchecked_custom_fields(mappings, schemas)
    if not online and not (connectors is not None and unchecked):
        return MappingCheck(mappings, unchecked, online=False)
    own = connectors is None
    conns = connectors or build_connectors(settings, crm_client=crm_client,
                                           erp_client=erp_client)
    try:
        schemas = with_custom_fields(schemas, mappings, conns)
    finally:
        if own:
            for c in conns.values():
                c.close()
    return MappingCheck(load_mappings(directory, names, schemas=schemas), [], online=True)


@contextmanager
def session(
    settings: Settings,
    *,
    crm_client: httpx.Client | None = None,
    erp_client: httpx.Client | None = None,
    bind: bool = True,
) -> Iterator[tuple[Store, dict[Side, Connector], dict[str, EntityMapping]]]:
    """Validated mappings, an open state store and both connectors — config errors first,
    before anything is written. Every native path of the mappings is checked against the
    systems' field schemas (and their custom fields, when a mapping names one). A state built
    with other systems stops here (:class:`~etl.errors.StateBoundElsewhere`), before any request
    is sent; ``bind`` (a command that writes) binds a state that is not bound yet to the
    configured systems."""
    mappings = check_mappings(settings).mappings
    connectors = build_connectors(settings, crm_client=crm_client, erp_client=erp_client)
    try:
        store = Store.open(settings.state_url)
    except BaseException:
        for c in connectors.values():
            c.close()
        raise
    try:
        binding.ensure(store, settings, bind=bind, now=datetime.now(UTC))
        if unchecked_custom_fields(mappings, declared_schemas(settings)):
            mappings = check_mappings(settings, connectors=connectors).mappings
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
    progress: Callable[[str, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunReport:
    """One incremental run (what cron calls); ``dry_run`` = plan: writes nothing anywhere.
    ``progress(phase, records)`` is told of every page read and chunk written; ``should_stop``
    is asked between pages and chunks (a signal): the run then ends as ``stopped`` with whole
    chunks kept."""
    with session(settings, crm_client=crm_client, erp_client=erp_client,
                 bind=not dry_run) as (store, conns, maps):
        if entities:
            load_mappings(settings.mappings_dir, list(entities))  # names unknown entities
        return run_sync(
            store=store, connectors=conns, mappings=maps, entities=entities or None,
            kind="plan" if dry_run else "sync",
            options=options_from(settings, dry_run=dry_run, progress=progress,
                                 should_stop=should_stop),
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
    with session(settings, crm_client=crm_client, erp_client=erp_client,
                 bind=fix) as (store, conns, maps):
        if entities:
            maps = load_mappings(settings.mappings_dir, list(entities))
        return run_verify(store=store, connectors=conns, mappings=maps,
                          entities=list(entities) if entities else None, fix=fix,
                          max_delete_share=settings.max_delete_share, now=now,
                          should_stop=should_stop)
