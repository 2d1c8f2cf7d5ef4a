"""The shipped Ploomes-Omie mappings as a run against the sandbox sees them: their custom fields
(named by label) resolved through the simulated Ploomes account's field list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from etl.connectors.registry import get
from etl.connectors.schema import SystemSchema, custom_fields_from, schema_for
from etl.mapping import EntityMapping, load_mappings
from etl.mapping.models import Side
from etl.sandbox.ploomes.custom import FIELDS

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings" / "ploomes_omie"


def sandbox_schemas() -> dict[Side, SystemSchema]:
    """The Ploomes and Omie field schemas, Ploomes with the custom fields its simulator lists
    (``/Fields``), as a run reads them."""
    crm = schema_for("ploomes")
    spec = get("ploomes").spec.custom_fields
    assert spec is not None
    collections = dict(crm.collections)
    for name, entity_id in crm.custom_entity_ids.items():
        if name in collections:
            listed = [f for f in FIELDS if f["EntityId"] == entity_id]
            collections[name] = collections[name].with_custom(custom_fields_from(spec, listed))
    return {"crm": replace(crm, collections=collections), "erp": schema_for("omie")}


def shipped_mappings(directory: Path = MAPPINGS) -> dict[str, EntityMapping]:
    """The mappings in ``directory`` (the shipped ones by default), custom fields resolved."""
    return load_mappings(directory, schemas=sandbox_schemas())
