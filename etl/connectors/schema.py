"""What each system's records hold: a field schema per native collection, declared as data.

A mapping names native paths (``Email``, ``City.IBGECode``, ``cabecalho.etapa``,
``det[].produto.codigo_produto``); a typo in one reads ``None`` from every record and would plan
blanking that field on the other side. The loader checks every path against these schemas
before anything runs (:mod:`etl.mapping.paths`).

The fields are declared in each connector's spec (``schemas:``, see
:class:`etl.connectors.spec.SchemaSpec`); :func:`system_schema` builds these trees from it. The
built-in ones come from the vendors' published types and field docs (Ploomes ``IContacts`` &c.,
Omie's WSDL-generated ``clientes_cadastro`` &c.) and what the sandbox simulators serve.

* :class:`Obj` is one JSON object: its field names, each a leaf (``None``) or a nested
  :class:`Obj`; ``many`` marks a list of such objects (``Phones``, ``det``).
* Ploomes custom fields live in the ``OtherProperties`` list, one item per field, selected by
  ``FieldKey`` (``OtherProperties[FieldKey=contact_…].StringValue``). Their keys are not static:
  :meth:`CollectionSchema.with_custom` adds the ones the account's ``/Fields`` lists, each a
  :class:`CustomField` with its label and type (which item property holds its value).
* ``always_sent``: the paths every record of a listing carries, even when empty; ``None`` =
  every declared field (Ploomes: OData sends every property of a record, null when empty, and
  the connector uses no ``$select``). Omie leaves out tags that were never filled, so only the
  fields it requires (or always renders) are listed. The run-time guard that stops an entity
  whose mapped path no record carries judges only these paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from etl.connectors.spec import ConnectorSpec, CustomFieldList, OptionList
from etl.connectors.templates import dig
from etl.errors import ConfigError

_SELECTORS = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class Obj:
    """A JSON object's known fields; ``many`` = a list of such objects."""

    fields: MappingProxyType[str, Obj | None]
    many: bool = False


@dataclass(frozen=True)
class CustomField:
    """One custom field the system lists: its key, label and type; ``value`` is the item
    property that holds its value (``None``: a type the connector spec does not know)."""

    key: str
    label: str
    type: str  # the type's name (``Decimal``), or its id when the spec does not know it
    value: str | None = None
    transform: str = "text"
    args: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # an option field's options, (id, name) each, as the system lists them; None: not one
    options: tuple[tuple[str, str], ...] | None = None


def custom_fields_from(spec: CustomFieldList, records: list[dict[str, Any]],
                       options: Mapping[str, list[tuple[str, str]]] | None = None
                       ) -> list[CustomField]:
    """The custom fields in the system's answer to its field list (``custom_fields``); an
    option field (one naming an options table, ``options_table``) gets the options
    ``options`` lists for its table (table -> (id, name) each)."""
    out = []
    for r in records:
        key = dig(r, spec.key)
        if not key:
            continue
        type_id = str(dig(r, spec.type)) if spec.type else ""
        known = spec.types.get(type_id)
        label = str(dig(r, spec.label) or key) if spec.label else str(key)
        table = dig(r, spec.options_table) if spec.options_table else None
        listed = None if table in (None, "") or options is None else tuple(
            options.get(str(table), ()))
        if known is None:
            out.append(CustomField(str(key), label, type_id or "?", options=listed))
        else:
            out.append(CustomField(str(key), label, known.name, known.value, known.transform,
                                   MappingProxyType(dict(known.args)), listed))
    return out


def options_from(spec: OptionList, records: list[dict[str, Any]]
                 ) -> dict[str, list[tuple[str, str]]]:
    """The system's options list by table: table -> (id, name) of each option."""
    out: dict[str, list[tuple[str, str]]] = {}
    for r in records:
        key, name, table = dig(r, spec.key), dig(r, spec.value), dig(r, spec.table)
        if key not in (None, "") and table not in (None, ""):
            out.setdefault(str(table), []).append((str(key), str(name or key)))
    return out


@dataclass(frozen=True)
class CollectionSchema:
    system: str  # the vendor's name, for messages: "Ploomes", "Omie"
    collection: str  # the native collection, as mapping files name it
    root: Obj
    always_sent: frozenset[str] | None = None
    custom_list: str | None = None  # the list field that carries custom fields
    custom_key: str = "FieldKey"  # the item field that names a custom field
    custom_keys: frozenset[str] | None = None  # None: not fetched (offline check)
    custom_fields: tuple[CustomField, ...] | None = None  # None: not fetched (offline check)
    custom_value: str | None = None  # free-form custom fields (no field list): the value field

    def with_custom(self, keys: set[str] | frozenset[str] | list[CustomField]
                    ) -> CollectionSchema:
        """This schema with the custom fields the system lists (their keys, or the fields
        with labels and types)."""
        fields = tuple(f for f in keys if isinstance(f, CustomField))
        if fields or not keys:
            return replace(self, custom_keys=frozenset(f.key for f in fields),
                           custom_fields=fields)
        return replace(self, custom_keys=frozenset(str(k) for k in keys))

    def always_carries(self, path: str) -> bool:
        """Does every record of a listing carry ``path`` (list selectors ignored)?"""
        return self.always_sent is None or _SELECTORS.sub("", path) in self.always_sent


@dataclass(frozen=True)
class SystemSchema:
    """Every collection of one system kind (``ploomes``, ``omie``)."""

    kind: str
    system: str
    collections: dict[str, CollectionSchema] = field(default_factory=dict)
    custom_entity_ids: dict[str, int] = field(default_factory=dict)  # collection -> /Fields id

    def collection(self, name: str) -> CollectionSchema:
        try:
            return self.collections[name]
        except KeyError:
            raise ConfigError(
                f"{self.system} has no collection {name!r} "
                f"(valid: {', '.join(sorted(self.collections))})") from None


def _tree(node: Any, where: str, *, many: bool = False) -> Obj:
    """A schema tree from its YAML form (see :class:`etl.connectors.spec.SchemaSpec`)."""
    if node is None or isinstance(node, str):
        return Obj(MappingProxyType(dict.fromkeys((node or "").split())), many)
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: a field list (text) or an object of fields; got {node!r}")
    fields: dict[str, Obj | None] = {}
    for name, value in node.items():
        if name == "_":
            if not isinstance(value, str):
                raise ConfigError(f"{where}._: leaf field names, space separated; got {value!r}")
            fields.update(dict.fromkeys(value.split()))
            continue
        name = str(name)
        nested_many = name.endswith("[]")
        fields[name.removesuffix("[]")] = _tree(value, f"{where}.{name}", many=nested_many)
    return Obj(MappingProxyType(fields), many)


def system_schema(spec: ConnectorSpec, *, source: str | None = None) -> SystemSchema:
    """The field schemas a spec declares, as the mapping checker walks them."""
    where = f"{source}: " if source else f"connector {spec.name!r}: "
    collections: dict[str, CollectionSchema] = {}
    ids: dict[str, int] = {}
    for name, s in spec.schemas.items():
        root = _tree(s.fields, f"{where}schemas.{name}.fields")
        always = frozenset(s.always_sent.split()) if s.always_sent is not None else None
        custom = s.custom
        collections[name] = CollectionSchema(
            spec.title, name, root, always_sent=always,
            custom_list=custom.list_field if custom else None,
            custom_key=custom.key if custom else "FieldKey",
            custom_value=custom.value if custom else None)
        if custom is not None and custom.entity_id is not None:
            ids[name] = custom.entity_id
    return SystemSchema(spec.name, spec.title, collections, custom_entity_ids=ids)


class _Schemas(Mapping[str, SystemSchema]):
    """Schemas by connector kind: the built-in specs', plus those of every connector built
    from another source (registered by the factory)."""

    def __init__(self) -> None:
        self._extra: dict[str, SystemSchema] = {}

    def _all(self) -> dict[str, SystemSchema]:
        from etl.connectors.registry import built_in

        out = {r.spec.name: _built_in_schema(r.spec.name) for r in built_in()}
        out.update(self._extra)
        return out

    def register(self, spec: ConnectorSpec) -> SystemSchema:
        schema = system_schema(spec)
        self._extra[spec.name] = schema
        return schema

    def __getitem__(self, kind: str) -> SystemSchema:
        return self._all()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


_BUILT: dict[str, SystemSchema] = {}


def _built_in_schema(kind: str) -> SystemSchema:
    if kind not in _BUILT:
        from etl.connectors.registry import built_in

        spec = next(r.spec for r in built_in() if r.spec.name == kind)
        _BUILT[kind] = system_schema(spec)
    return _BUILT[kind]


#: Schemas by connector kind (``PONTE_CRM__KIND`` / ``PONTE_ERP__KIND``).
SCHEMAS = _Schemas()


def schema_for(kind: str) -> SystemSchema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ConfigError(f"no field schema for connector {kind!r} "
                          f"(valid: {', '.join(sorted(SCHEMAS))})") from None
