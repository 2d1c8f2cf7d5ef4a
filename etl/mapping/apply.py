"""Apply a mapping: native record -> canonical values, canonical values -> native payload.

Pure functions; links to other entities come in through :class:`MapContext`.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from etl.errors import RecordError
from etl.mapping.models import EntityMapping, Side
from etl.mapping.transforms import REGISTRY

_INDEX = re.compile(r"^(\w+)\[(\d+)\]$")
_SELECT = re.compile(r"^(\w+)\[(\w+)=([^\]]+)\]$")  # the list item whose field = value


#: One part of a native path: a plain key, ``name[index]`` or ``name[Field=value]``.
_Step = tuple[str, str, Any, Any]


@functools.lru_cache(maxsize=4096)
def _steps(path: str) -> tuple[_Step, ...]:
    """``path`` parsed once: every record of a run reads the same few dozen paths."""
    out: list[_Step] = []
    for part in path.split("."):
        if (match := _INDEX.match(part)) is not None:
            out.append(("index", match[1], int(match[2]), None))
        elif (selector := _SELECT.match(part)) is not None:
            out.append(("select", selector[1], selector[2], selector[3]))
        else:
            out.append(("key", part, None, None))
    return tuple(out)


def get_path(record: Any, path: str) -> Any:
    """``a.b[0].c`` or ``a.b[Key=value].c`` inside nested dicts/lists; missing parts give
    ``None``. ``[Key=value]`` picks the first list item whose ``Key`` is ``value`` (Ploomes
    custom fields: ``OtherProperties[FieldKey=contact_…].StringValue``)."""
    value = record
    for kind, name, arg, wanted in _steps(path):
        value = value.get(name) if isinstance(value, dict) else None
        if kind == "index":
            value = value[arg] if isinstance(value, list) and arg < len(value) else None
        elif kind == "select":
            value = next((x for x in value if isinstance(x, dict)
                          and str(x.get(arg)) == wanted), None) \
                if isinstance(value, list) else None
        if value is None:
            return None
    return value


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating them as needed; ``a[Key=value].c`` sets ``c``
    in the item of list ``a`` whose ``Key`` is ``value`` (added when missing); ``a[0].c`` in
    the list's item at that position (empty items added up to it)."""
    parts = path.split(".")
    node = record
    for part in parts[:-1]:
        selector = _SELECT.match(part)
        index = _INDEX.match(part)
        if index:
            items = node.setdefault(index[1], [])
            items.extend({} for _ in range(int(index[2]) + 1 - len(items)))
            node = items[int(index[2])]
        elif selector:
            items = node.setdefault(selector[1], [])
            item = next((x for x in items if isinstance(x, dict)
                         and str(x.get(selector[2])) == selector[3]), None)
            if item is None:
                item = {selector[2]: selector[3]}
                items.append(item)
            node = item
        else:
            node = node.setdefault(part, {})
    node[parts[-1]] = value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


LinkLookup = Callable[[str, Side, str], "str | None"]


class ReferenceTables(Protocol):
    """A side's reference lists (users, sellers, tags), read once per run by the engine."""

    def rows(self, side: Side, name: str, *, fresh: bool = False) -> dict[str, str]: ...
    def borrowed(self, side: Side, name: str) -> bool: ...  # rows an earlier command read
    def create(self, side: Side, name: str, value: str) -> str: ...
    def describe(self, side: Side, name: str) -> str: ...


@dataclass
class MapContext:
    """Links the transforms may follow: CRM key <-> ERP key per entity.

    The canonical identity of a linked record is its CRM key, so both sides of an order that
    points at the same customer carry the same canonical value. Links are looked up lazily
    through ``lookup`` (the state store) and cached, so a run's cost follows its delta, not the
    size of the linked tables.
    """

    side: Side = "crm"
    crm_to_erp: dict[str, dict[str, str]] = field(default_factory=dict)
    erp_to_crm: dict[str, dict[str, str]] = field(default_factory=dict)
    lookup: LinkLookup | None = None
    refs: ReferenceTables | None = None  # the reference lists of ``reference``/``tag_list``

    def for_side(self, side: Side) -> MapContext:
        return MapContext(side, self.crm_to_erp, self.erp_to_crm, self.lookup, self.refs)

    def tables(self) -> ReferenceTables:
        if self.refs is None:
            raise RecordError("this field points into a reference list (users, sellers, "
                              "tags) and no connector is at hand to read it")
        return self.refs

    def add_link(self, entity: str, crm_key: str, erp_key: str) -> None:
        self.crm_to_erp.setdefault(entity, {})[crm_key] = erp_key
        self.erp_to_crm.setdefault(entity, {})[erp_key] = crm_key

    def _find(self, entity: str, side: Side, key: str) -> str | None:
        known = (self.crm_to_erp if side == "crm" else self.erp_to_crm).get(entity, {})
        if key in known:
            return known[key]
        if self.lookup is None:
            return None
        partner = self.lookup(entity, side, key)
        if partner is not None:
            if side == "crm":
                self.add_link(entity, key, partner)
            else:
                self.add_link(entity, partner, key)
        return partner

    def to_canonical(self, entity: str, native_key: str) -> str:
        if self.side == "crm":
            return native_key
        crm_key = self._find(entity, "erp", native_key)
        if crm_key is None:
            raise RecordError(f"{entity} {native_key} of the ERP is not linked to the CRM yet")
        return crm_key

    def from_canonical(self, entity: str, canonical: str) -> str:
        if self.side == "crm":
            return canonical
        erp_key = self._find(entity, "crm", canonical)
        if erp_key is None:
            raise RecordError(
                f"{entity} {canonical} of the CRM is not synced to the ERP yet "
                f"(sync {entity} first, or see its quarantine)"
            )
        return erp_key


@dataclass(frozen=True)
class _ReadField:
    """How :func:`read_record` reads one mapped field of one side (worked out once)."""

    name: str
    paths: tuple[str, ...]
    several: bool  # ``paths``: the transform gets the list of their values
    fallbacks: tuple[str, ...]
    read: Callable[[Any, dict[str, Any], MapContext], str | None]
    args: dict[str, Any]
    required: bool


#: The read plans of the mappings in use, by ``(id(mapping), side)``, with the mapping itself
#: (an id is only ever reused by another object once the first is gone).
_READ_PLANS: dict[tuple[int, Side], tuple[EntityMapping, tuple[_ReadField, ...]]] = {}
_READ_PLANS_MAX = 64


def _read_plan(mapping: EntityMapping, side: Side) -> tuple[_ReadField, ...]:
    cached = _READ_PLANS.get((id(mapping), side))
    if cached is not None and cached[0] is mapping:
        return cached[1]
    plan: list[_ReadField] = []
    for name, spec in mapping.fields.items():
        sf = spec.side(side)
        if sf is None or sf.computed is not None:  # computed: filled by the engine
            continue
        plan.append(_ReadField(name, tuple(sf.native_paths()), bool(sf.paths),
                               tuple(sf.fallbacks()), REGISTRY[sf.transform].read, sf.args,
                               spec.required))
    if len(_READ_PLANS) >= _READ_PLANS_MAX:  # mappings are reloaded by each run of a daemon
        _READ_PLANS.clear()
    _READ_PLANS[(id(mapping), side)] = (mapping, tuple(plan))
    return tuple(plan)


def read_record(
    mapping: EntityMapping, side: Side, record: Mapping[str, Any], ctx: MapContext
) -> dict[str, str | None]:
    """The canonical values of every mapped field this side carries.

    Raises :class:`RecordError` naming the field, the native path and the problem.
    """
    ctx = ctx.for_side(side)
    values: dict[str, str | None] = {}
    for f in _read_plan(mapping, side):
        paths = f.paths
        raw: Any = [get_path(record, p) for p in paths] if f.several \
            else get_path(record, paths[0])
        where = None
        for fallback in f.fallbacks:
            if not _blank(raw):
                break
            raw, where = get_path(record, fallback), fallback
        try:
            value = f.read(raw, f.args, ctx)
        except RecordError as exc:
            raise RecordError(
                f"{mapping.entity} field {f.name!r} ({side} {where or '+'.join(paths)}): {exc}",
                field=f.name,
            ) from None
        if value is None and f.required:
            tried = " or ".join([*paths, *f.fallbacks]) if f.fallbacks else "+".join(paths)
            raise RecordError(
                f"{mapping.entity} field {f.name!r} ({side} {tried}) is required but empty",
                field=f.name,
            )
        values[f.name] = value
    return values


def also_write_gaps(mapping: EntityMapping, side: Side, record: Mapping[str, Any],
                    values: Mapping[str, str | None], ctx: MapContext) -> dict[str, str]:
    """Fields with ``also_write`` whose value (``values``, canonical) is not in the native path
    their ``by`` field picks in ``record``: ``{field: native path}``. A record written before
    the rule existed, or by someone who filled only one of the fields, has gaps."""
    ctx = ctx.for_side(side)
    gaps: dict[str, str] = {}
    for name, spec in mapping.fields.items():
        sf = spec.side(side)
        if sf is None or sf.read_only or sf.also_write is None or values.get(name) is None:
            continue
        path = sf.also_write.map.get(str(values.get(sf.also_write.by)))
        if path is None:
            continue
        try:
            held = REGISTRY[sf.transform].read(get_path(record, path), sf.args, ctx)
        except RecordError:
            held = None
        if held != values[name]:
            gaps[name] = path
    return gaps


def build_payload(
    mapping: EntityMapping,
    side: Side,
    values: Mapping[str, str | None],
    ctx: MapContext,
    *,
    create: bool,
    record: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The native payload that writes ``values`` (canonical) into ``side``.

    Fields the side does not carry, or marks read-only, are left out; on create the mapping's
    ``create_defaults`` for the side come first. ``record`` is the whole record's canonical
    values once written (``values`` included), for ``also_write`` rules whose ``by`` field is
    not among ``values``; on create ``values`` is the whole record.
    """
    ctx = ctx.for_side(side)
    payload: dict[str, Any] = {}
    if create:
        for path, value in mapping.create_defaults.get(side, {}).items():
            set_path(payload, path, value)
    for name, value in values.items():
        spec = mapping.fields[name]
        sf = spec.side(side)
        if sf is None or sf.read_only:
            continue
        if sf.max_length is not None and value is not None and len(value) > sf.max_length:
            raise RecordError(
                f"{mapping.entity} field {name!r} has {len(value)} characters; "
                f"the {side} field {sf.path} allows {sf.max_length}",
                field=name,
            )
        clear = value is None and sf.custom is not None  # a blank custom field: null, any type
        try:
            native: Any = None if clear else REGISTRY[sf.transform].write(value, sf.args, ctx)
        except RecordError as exc:
            raise RecordError(f"{mapping.entity} field {name!r}: {exc}", field=name) from None
        if sf.paths:
            for path, part in zip(sf.paths, native, strict=True):
                set_path(payload, path, part)
        elif sf.path is not None:  # one of them is set (validated)
            set_path(payload, sf.path, native)
    _also_write(mapping, side, values, {**(record or {}), **values}, payload, ctx)
    return payload


def kept_fields(mapping: EntityMapping, side: Side, names: Iterable[str]) -> list[str]:
    """The fields among ``names`` whose write into ``side`` keeps the target's items the
    mapping does not own (a list transform with a ``merge``, and ``keep_unmapped`` on): such an
    update needs the target's current record (:func:`merge_kept`)."""
    out = []
    for name in names:
        sf = mapping.fields[name].side(side)
        if sf is not None and not sf.read_only and sf.path is not None and sf.keep_unmapped \
                and REGISTRY[sf.transform].merge is not None:
            out.append(name)
    return out


def merge_kept(mapping: EntityMapping, side: Side, payload: dict[str, Any],
               current: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` (from :func:`build_payload`) with each list field of :func:`kept_fields`
    merged into ``current`` (the target's native record as it is now): the items the mapping
    owns take the written ones, every other item of the target is kept in place."""
    out = copy.deepcopy(payload)
    for name in kept_fields(mapping, side, mapping.fields):
        sf = mapping.fields[name].side(side)
        assert sf is not None and sf.path is not None
        written = get_path(payload, sf.path)
        if written is None and not _has_path(payload, sf.path):
            continue  # not written by this payload
        merge = REGISTRY[sf.transform].merge
        assert merge is not None
        set_path(out, sf.path, merge(written, get_path(current, sf.path), sf.args))
    return out


def read_kept(mapping: EntityMapping, side: Side, payload: Mapping[str, Any], ctx: MapContext
              ) -> dict[str, str | None]:
    """The canonical values the list fields of :func:`kept_fields` that ``payload`` writes
    will read back as, once merged (:func:`merge_kept`)."""
    ctx = ctx.for_side(side)
    out: dict[str, str | None] = {}
    for name in kept_fields(mapping, side, mapping.fields):
        sf = mapping.fields[name].side(side)
        assert sf is not None and sf.path is not None
        if _has_path(payload, sf.path):
            out[name] = REGISTRY[sf.transform].read(get_path(payload, sf.path), sf.args, ctx)
    return out


def _has_path(record: Mapping[str, Any], path: str) -> bool:
    *parents, last = path.split(".")
    node = get_path(record, ".".join(parents)) if parents else record
    return isinstance(node, dict) and last in node


def _also_write(mapping: EntityMapping, side: Side, values: Mapping[str, str | None],
                whole: Mapping[str, str | None], payload: dict[str, Any], ctx: MapContext) -> None:
    """Fields with ``also_write`` also go to the native path their ``by`` field's value picks
    (the map's other paths are cleared), when the field or its ``by`` field is written. An
    unknown ``by`` value picks no path: only the field's own path is written."""
    for name, spec in mapping.fields.items():
        sf = spec.side(side)
        if sf is None or sf.read_only or sf.also_write is None:
            continue
        rule = sf.also_write
        if name not in values and rule.by not in values:
            continue
        if name not in whole:
            continue  # the value is not known here: nothing to copy
        chosen = rule.map.get(str(whole.get(rule.by)))
        if chosen is None:
            continue
        value = whole[name]
        try:
            native = REGISTRY[sf.transform].write(value, sf.args, ctx)
        except RecordError as exc:
            raise RecordError(f"{mapping.entity} field {name!r}: {exc}", field=name) from None
        for path in rule.paths():
            set_path(payload, path, native if path == chosen else None)
