"""Custom fields named by label or key, resolved into native paths.

A mapping may name a custom field instead of a native path: ``crm: {custom: Limite de crédito}``
or ``crm: {custom: contact_<GUID>}``. Only the system knows its custom fields (Ploomes
``/Fields``), so the resolution waits for the field list, read once per collection at the
start of a run (:func:`etl.api.with_custom_fields`); until then the field is "not checked
offline". Resolved, the side reads and writes an ordinary path,
``OtherProperties[FieldKey=contact_<GUID>].DecimalValue``: the item property follows the field's
type (``value`` overrides it), and a side that sets no ``transform`` gets the type's own
(``decimal`` for Decimal, ``date`` for DateTime, …; see the connector spec's
``custom_fields.types``). A system whose custom fields are free-form name/value items with no
field list (Omie's characteristics, ``caracteristicas[campo=<name>].conteudo``) resolves any
name at once.

An option field (Ploomes "Lista") is written by the option's id; with ``transform: option`` a
mapping gives the option's name instead, looked up in the options the system lists with its
fields (read once per run); reading maps the id back to the name, and a name with no option
quarantines the record with a reason naming the field and the nearest option names.

A name that is neither a key nor a label of the collection's custom fields is a
:class:`ConfigError` naming the name, the collection and the nearest labels.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping

from etl.connectors.schema import CollectionSchema, CustomField
from etl.errors import ConfigError
from etl.mapping.models import SIDES, EntityMapping, FieldSpec, Side, SideField


def _norm(label: str) -> str:
    return " ".join(unicodedata.normalize("NFC", label).casefold().split())


def find(schema: CollectionSchema, name: str) -> CustomField:
    """The custom field ``name`` (a key, or a label: case and spacing aside) of the collection;
    raises :class:`ConfigError` naming it, the collection and the nearest labels."""
    fields = schema.custom_fields or ()
    by_key = [f for f in fields if f.key == name]
    if by_key:
        return by_key[0]
    by_label = [f for f in fields if _norm(f.label) == _norm(name)]
    if len(by_label) == 1:
        return by_label[0]
    where = f"{schema.system} {schema.collection}"
    if len(by_label) > 1:
        keys = ", ".join(f.key for f in by_label)
        raise ConfigError(f"{where} has {len(by_label)} custom fields labelled {name!r} "
                          f"({keys}); name one by its key")
    if not fields:
        raise ConfigError(f"no custom field {name!r} in {where}: it lists no custom fields")
    labels = sorted({f.label for f in fields})
    near = difflib.get_close_matches(name, labels, n=3, cutoff=0.5) or difflib.get_close_matches(
        _norm(name), [_norm(x) for x in labels], n=3, cutoff=0.5)
    near = [x for x in labels if x in near or _norm(x) in near]
    hint = ("; nearest: " + ", ".join(repr(x) for x in near)) if near else (
        f" (its custom fields: {', '.join(repr(x) for x in labels[:12])}"
        f"{', …' if len(labels) > 12 else ''})")
    raise ConfigError(f"no custom field labelled {name!r} in {where}{hint}")


def resolve_side(sf: SideField, schema: CollectionSchema) -> SideField:
    """``sf`` with its ``custom`` field turned into a native path (and the type's transform
    when it names none)."""
    assert sf.custom is not None
    if schema.custom_list is None:
        raise ConfigError(f"{schema.system} {schema.collection} has no custom fields "
                          f"(name a native path instead of custom {sf.custom!r})")
    if schema.custom_value is not None:  # free-form (Omie characteristics): any name
        return sf.model_copy(update={"path": f"{schema.custom_list}[{schema.custom_key}="
                                             f"{sf.custom}].{sf.value or schema.custom_value}"})
    found = find(schema, sf.custom)
    value = sf.value or found.value
    if value is None:
        raise ConfigError(f"{schema.system} {schema.collection} custom field {found.label!r} "
                          f"({found.key}) has type {found.type}, which the connector does not "
                          "know: say which item property holds its value with 'value:'")
    update: dict[str, object] = {
        "path": f"{schema.custom_list}[{schema.custom_key}={found.key}].{value}"}
    if sf.transform == "option":  # named by the option's name: the field's options go along
        if found.options is None:
            raise ConfigError(f"{schema.system} {schema.collection} custom field "
                              f"{found.label!r} ({found.key}) is a {found.type} field, not an "
                              "option field: 'transform: option' does not apply")
        update["args"] = {**sf.args, "field": found.label,
                          "options": [list(o) for o in found.options]}
    elif "transform" not in sf.model_fields_set and sf.value is None:
        update["transform"] = found.transform
        update["args"] = {**found.args, **sf.args}
    return sf.model_copy(update=update)


def resolve_custom(m: EntityMapping, schemas: Mapping[Side, CollectionSchema]
                   ) -> tuple[EntityMapping, list[str]]:
    """``m`` with each ``custom`` field whose system listed its custom fields resolved; and
    ``where: what`` lines for those left to resolve (offline). Raises :class:`ConfigError`
    naming the field (``fields.<name>.<side>.custom``) and the problem."""
    fields: dict[str, FieldSpec] = {}
    pending: list[str] = []
    problems: list[str] = []
    for name, spec in m.fields.items():
        sides: dict[str, SideField] = {}
        for side in SIDES:
            sf = spec.side(side)
            if sf is None or sf.custom is None or sf.path is not None:
                continue
            schema = schemas.get(side)
            where = f"fields.{name}.{side}.custom"
            if schema is None:
                continue
            if (schema.custom_fields is None and schema.custom_list is not None
                    and schema.custom_value is None):
                pending.append(f"{where}: {schema.system} {schema.collection} custom field "
                               f"{sf.custom!r}")
                continue
            try:
                sides[side] = resolve_side(sf, schema)
            except ConfigError as exc:
                problems.append(f"{where}: {exc}")
        fields[name] = spec.model_copy(update=sides) if sides else spec
    if problems:
        raise ConfigError("\n".join(problems))
    return m.model_copy(update={"fields": fields}), pending


def unresolved(m: EntityMapping) -> list[str]:
    """``fields.<name>.<side>`` of each custom field not resolved into a path yet."""
    return [f"fields.{name}.{side}" for name, spec in m.fields.items() for side in SIDES
            if (sf := spec.side(side)) is not None and sf.custom is not None and sf.path is None]
