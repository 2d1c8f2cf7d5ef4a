"""Load and validate mapping files. Errors name the file, the path inside it, the bad value and
what would be valid — before anything is written anywhere."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from etl.connectors.schema import CollectionSchema, SystemSchema
from etl.connectors.spec import entity_order, parse_yaml
from etl.errors import ConfigError
from etl.mapping.computed import check_computed, check_sources
from etl.mapping.custom import resolve_custom
from etl.mapping.models import SIDES, EntityMapping, Side
from etl.mapping.paths import check_paths
from etl.mapping.transforms import REGISTRY


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


Schemas = Mapping[Side, SystemSchema]


def load_mapping(path: Path, *, schemas: Schemas | None = None) -> EntityMapping:
    """One mapping file, validated; with ``schemas`` every native path it names must be a
    field the system declares (see :mod:`etl.mapping.paths`)."""
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: mapping file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a mapping file must be a YAML object with 'entity' and 'fields'")
    try:
        mapping = EntityMapping.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _where(tuple(err["loc"]))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            ctx = err.get("ctx") or {}
            valid = (f" (valid: {ctx['expected']})"
                     if "expected" in ctx and str(ctx["expected"]) not in msg else "")
            bad = err.get("input")
            shown = f"; got {bad!r}" if not isinstance(bad, dict | list) else ""
            problems.append(f"{path}: {where}: {msg}{valid}{shown}")
        raise ConfigError("\n".join(problems)) from None
    _check(mapping, path)
    if schemas is not None:
        mapping = _check_native_paths(mapping, path, schemas)
    return mapping


def collection_schemas(m: EntityMapping, schemas: Schemas) -> dict[Side, CollectionSchema]:
    """The schema of each side's collection named by the mapping."""
    return {side: schemas[side].collection(m.systems[side].collection)
            for side in SIDES if side in m.systems and side in schemas}


def _check_native_paths(m: EntityMapping, path: Path, schemas: Schemas) -> EntityMapping:
    """``m`` with its custom fields resolved (where the systems' field lists are known), every
    native path checked."""
    try:
        by_side = collection_schemas(m, schemas)
    except ConfigError as exc:
        raise ConfigError(f"{path}: systems: {exc}") from None
    try:
        m, _ = resolve_custom(m, by_side)
    except ConfigError as exc:
        raise ConfigError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())
                          ) from None
    problems = check_paths(m, by_side).problems
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))
    return m


def unchecked_custom_fields(mappings: Mapping[str, EntityMapping], schemas: Schemas
                            ) -> list[str]:
    """Custom fields the mappings name that the offline schemas cannot confirm (only the
    system's own field list can), as ``entity: where: what`` lines."""
    out = []
    for name, m in mappings.items():
        by_side = collection_schemas(m, schemas)
        out += [f"{name}: {line}" for line in resolve_custom(m, by_side)[1]]
        out += [f"{name}: {line}" for line in check_paths(m, by_side).unchecked]
    return out


def _check_fallback(m: EntityMapping) -> list[str]:
    """``natural_key_fallback``: a field mapped on both sides, searchable on both sides, used
    only beside a natural key (for the records whose natural key is empty)."""
    fb = m.natural_key_fallback
    if fb is None:
        return []
    problems = []
    if m.natural_key is None:
        problems.append("natural_key_fallback: needs a natural_key (it matches only the "
                        "records whose natural key is empty)")
    spec = m.fields.get(fb)
    if spec is None:
        problems.append(f"natural_key_fallback: {fb!r} is not a mapped field "
                        f"(fields: {', '.join(m.fields)})")
    elif spec.crm is None or spec.erp is None:
        problems.append(f"natural_key_fallback: {fb!r} must be mapped on both sides")
    for side in ("crm", "erp"):
        system = m.systems.get(side)
        if system is None or not system.natural_key_fallback_field:
            problems.append(f"systems.{side}.natural_key_fallback_field: required by "
                            f"natural_key_fallback (the native field to search {fb!r} by)")
    return problems


def _check(m: EntityMapping, path: Path) -> None:
    problems = []
    for name, spec in m.fields.items():
        if spec.crm is None and spec.erp is None:
            problems.append(f"fields.{name}: maps neither crm nor erp")
        for side in ("crm", "erp"):
            sf = spec.side(side)
            if sf is not None and sf.transform not in REGISTRY:
                problems.append(
                    f"fields.{name}.{side}.transform: unknown transform {sf.transform!r} "
                    f"(valid: {', '.join(sorted(REGISTRY))})"
                )
            elif sf is not None:
                problems += [f"fields.{name}.{side}.args.{arg}: required by the transform "
                             f"{sf.transform!r}" for arg in REGISTRY[sf.transform].required
                             if arg not in sf.args]
                if sf.transform == "option" and sf.custom is None and "options" not in sf.args:
                    problems.append(f"fields.{name}.{side}.transform: 'option' reads the "
                                    "options of a custom option field: name the field with "
                                    "'custom:' (or list args.options as [id, name] pairs)")
    for ref, label in ((m.natural_key, "natural_key"),):
        if ref is not None and ref not in m.fields:
            problems.append(f"{label}: {ref!r} is not a mapped field (fields: {', '.join(m.fields)})")
    problems += _check_fallback(m)
    for field_name in m.deactivate:
        if field_name not in m.fields:
            problems.append(f"deactivate.{field_name}: not a mapped field")
    for i, pre in enumerate(m.preconditions):
        if pre.field not in m.fields:
            problems.append(f"preconditions[{i}].field: {pre.field!r} is not a mapped field")
    problems += check_computed(m)
    if not m.sources():
        problems.append("no field flows from either side (check 'owner' and the field sides)")
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))


def _no_mappings_hint(directory: Path) -> str:
    """What an empty mappings folder holds instead: folders of mappings (one system pair
    each) or files named ``.yml``."""
    pairs = sorted(d.name for d in directory.iterdir() if d.is_dir() and any(d.glob("*.yaml")))
    if pairs:
        return (f"; its folders {', '.join(pairs)} have some: set PONTE_MAPPINGS_DIR to one of "
                f"them, e.g. {directory / pairs[0]}")
    yml = sorted(f.name for f in directory.glob("*.yml"))
    if yml:
        return f"; {', '.join(yml)} end in .yml: rename them to .yaml"
    return "; leave PONTE_MAPPINGS_DIR empty for the mappings shipped with ponte"


def load_mappings(directory: Path, entities: list[str] | None = None, *,
                  schemas: Schemas | None = None) -> dict[str, EntityMapping]:
    """Every ``*.yaml`` in ``directory`` keyed by entity, in dependency order; with
    ``schemas``, native paths are checked against them."""
    if not directory.is_dir():
        raise ConfigError(
            f"mappings directory {directory} does not exist (set PONTE_MAPPINGS_DIR)"
        )
    found: dict[str, EntityMapping] = {}
    for file in sorted(directory.glob("*.yaml")):
        mapping = load_mapping(file, schemas=schemas)
        if mapping.entity in found:
            raise ConfigError(f"{file}: entity {mapping.entity!r} is mapped twice")
        found[mapping.entity] = mapping
    if not found:  # a run over nothing would say "ok" and sync nothing, run after run
        raise ConfigError(f"mappings directory {directory} has no mapping files (*.yaml)"
                          f"{_no_mappings_hint(directory)}")
    for mapping in found.values():
        for dep in mapping.depends_on:
            if dep not in found:
                raise ConfigError(f"{mapping.entity}: depends_on {dep!r}, which has no mapping")
    problems = check_sources(found)
    if problems:
        raise ConfigError("\n".join(f"{directory}: {p}" for p in problems))
    if entities:
        unknown = [e for e in entities if e not in found]
        if unknown:
            guesses = [g for e in unknown for g in difflib.get_close_matches(e, list(found), 1)]
            hint = f"; did you mean {', '.join(guesses)}?" if guesses else ""
            raise ConfigError(
                f"unknown entity {', '.join(unknown)} (valid: {', '.join(found)}){hint}"
            )
    try:  # each entity after the ones it depends on (orders after customers and products)
        order = entity_order(found)
    except ValueError as exc:
        raise ConfigError(f"{directory}: {exc}") from None
    return {e: found[e] for e in order if not entities or e in entities}
