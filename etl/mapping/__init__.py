"""Declarative field mappings: typed models, a loader that validates them, named transforms, and
the two pure functions the engine uses — native record → canonical values, and canonical values →
native payload."""

from etl.mapping import references as _references  # noqa: F401  (registers its transforms)
from etl.mapping.apply import (
    MapContext,
    also_write_gaps,
    build_payload,
    kept_fields,
    merge_kept,
    read_kept,
    read_record,
)
from etl.mapping.loader import load_mapping, load_mappings
from etl.mapping.models import EntityMapping, FieldSpec, Side, SideField

__all__ = [
    "EntityMapping",
    "FieldSpec",
    "MapContext",
    "Side",
    "SideField",
    "also_write_gaps",
    "build_payload",
    "kept_fields",
    "load_mapping",
    "load_mappings",
    "merge_kept",
    "read_kept",
    "read_record",
]
