"""What every run against the systems needs, built from Settings: engine options, checked
mappings (native paths against the systems' field schemas), and a session (mappings, an open
state store bound to the configured systems, both connectors). Internal to
:class:`etl.ponte.Ponte`, which is the library's entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from etl import binding
from etl.connectors.base import Connector, stops_waits
from etl.connectors.factory import build_connectors
from etl.connectors.schema import SystemSchema, schema_for
from etl.engine import Options
from etl.mapping import EntityMapping, load_mappings
from etl.mapping.loader import unchecked_custom_fields
from etl.mapping.models import Side
from etl.settings import Settings
from etl.state import Store


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
    """``schemas`` plus the custom fields each system lists (Ploomes ``/Fields``: keys, labels
    and types) for the collections whose mappings name a custom field: one listing per
    collection."""
    out = dict(schemas)
    naming = [m for name, m in mappings.items() if unchecked_custom_fields({name: m}, schemas)]
    for side, system in schemas.items():
        fetch = getattr(connectors.get(side), "custom_fields", None)
        if fetch is None:
            continue
        collections = dict(system.collections)
        wanted = {m.systems[side].collection for m in naming if side in m.systems}
        for name in sorted(wanted):
            if name in system.custom_entity_ids and name in collections:
                collections[name] = collections[name].with_custom(
                    fetch(system.custom_entity_ids[name]))
        out[side] = replace(system, collections=collections)
    return out


@dataclass(frozen=True)
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
    now: datetime,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[Store, dict[Side, Connector], dict[str, EntityMapping]]]:
    """Validated mappings, an open state store and both connectors — config errors first,
    before anything is written. Every native path of the mappings is checked against the
    systems' field schemas (and their custom fields, when a mapping names one). A state built
    with other systems stops here (:class:`~etl.errors.StateBoundElsewhere`), before any request
    is sent; ``bind`` (a command that writes) binds a state that is not bound yet to the
    configured systems (``now``: when that binding is recorded). ``should_stop`` (a signal)
    ends the custom-field listing's waits and retries with :class:`~etl.errors.Stopped`."""
    mappings = check_mappings(settings).mappings
    connectors = build_connectors(settings, crm_client=crm_client, erp_client=erp_client)
    try:
        store = settings.open_state()
    except BaseException:
        for c in connectors.values():
            c.close()
        raise
    try:
        binding.ensure(store, settings, bind=bind, now=now)
        if unchecked_custom_fields(mappings, declared_schemas(settings)):
            with stops_waits(connectors.values(), should_stop):
                mappings = check_mappings(settings, connectors=connectors).mappings
        yield store, connectors, mappings
    finally:
        store.close()
        for c in connectors.values():
            c.close()
