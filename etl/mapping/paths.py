"""Every native path a mapping names, checked against the systems' field schemas.

Two guards against a typo in a native path, which would read ``None`` from every record and plan
blanking that field on the other side:

* :func:`check_paths` (load time): each path must be a field the system declares
  (:mod:`etl.connectors.schema`), else a :class:`ConfigError` names the file, where in it, the
  side, the unknown path and the nearest valid ones.
* :func:`unsent_paths` (run time): a mapped path that *no* record of a listing carries (the key
  is not there at all — an empty or null value is fine, and so is a null parent object) means
  the system does not send it; the engine stops that entity before writing anything.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from etl.connectors.schema import CollectionSchema, Obj
from etl.mapping.models import SIDES, EntityMapping, Side, SideField

_PART = re.compile(r"^(?P<name>\w+)(?:\[(?:(?P<index>\d+)|(?P<key>\w+)=(?P<value>[^\]]+))\])?$")
#: transform args that are native paths inside each item of the field's list
ITEM_PATH_ARGS: dict[str, tuple[str, ...]] = {
    "lines": ("product", "quantity", "price", "number"),
    "phone_list": ("number_key",),
}
ITEM_DEFAULTS_ARG = "item_defaults"


@dataclass(frozen=True)
class Ref:
    """One native path named in a mapping file."""

    where: str  # e.g. ``fields.email.crm.path``
    side: Side
    path: str
    base: str | None = None  # for item-relative paths: the list field they live in
    field: str | None = None  # the mapped field it belongs to (checked at run time)


def _listify(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _side_refs(name: str, side: Side, sf: SideField) -> list[Ref]:
    where = f"fields.{name}.{side}"
    refs: list[Ref] = []
    if sf.paths is not None:
        refs += [Ref(f"{where}.paths[{i}]", side, p, field=name) for i, p in enumerate(sf.paths)]
    elif sf.path is not None:
        refs.append(Ref(f"{where}.path", side, sf.path, field=name))
    fallbacks = _listify(sf.fallback)
    single = isinstance(sf.fallback, str)
    for i, p in enumerate(fallbacks):
        refs.append(Ref(f"{where}.fallback" + ("" if single else f"[{i}]"), side, p, field=name))
    if sf.path is not None:
        for arg in ITEM_PATH_ARGS.get(sf.transform, ()):
            if isinstance(sf.args.get(arg), str):
                refs.append(Ref(f"{where}.args.{arg}", side, sf.args[arg], base=sf.path,
                                field=name))
        defaults = sf.args.get(ITEM_DEFAULTS_ARG)
        if isinstance(defaults, Mapping):
            refs += [Ref(f"{where}.args.{ITEM_DEFAULTS_ARG}.{k}", side, str(k), base=sf.path)
                     for k in defaults]
    return refs


def mapping_refs(m: EntityMapping) -> list[Ref]:
    """Every native path of the mapping: system key fields, create defaults, mapped fields
    (``path``, ``paths``, ``fallback``) and the item paths of list transforms."""
    refs: list[Ref] = []
    for side in SIDES:
        system = m.systems.get(side)
        if system is not None:
            for attr in ("external_id_field", "natural_key_field",
                         "natural_key_fallback_field"):
                value = getattr(system, attr)
                if value:
                    refs.append(Ref(f"systems.{side}.{attr}", side, value))
        for path in m.create_defaults.get(side, {}):
            refs.append(Ref(f"create_defaults.{side}.{path}", side, str(path)))
    for name, spec in m.fields.items():
        for side in SIDES:
            sf = spec.side(side)
            if sf is not None:
                refs += _side_refs(name, side, sf)
    return refs


def _nearest(word: str, names: Iterable[str], prefix: str) -> str:
    names = sorted(names)
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if close:  # the best match, and any as good as it
        best = difflib.SequenceMatcher(None, word, close[0]).ratio()
        close = [c for c in close
                 if difflib.SequenceMatcher(None, word, c).ratio() >= best - 0.05]
    if not close:
        close = [n for n in names if n.lower() == word.lower()]
    if close:
        return "; did you mean " + " or ".join(repr(prefix + c) for c in close) + "?"
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    return f" (valid{' in ' + repr(prefix.rstrip('.')) if prefix else ''}: {shown})"


@dataclass(frozen=True)
class Resolution:
    problem: str | None = None  # why the path is not a field of the schema
    custom_key: str | None = None  # a custom field key left to check (offline)


def resolve(schema: CollectionSchema, path: str, *, base: str | None = None) -> Resolution:
    """Walk ``path`` (``a.b``, ``a[0].b``, ``a[Key=value].b``) through the schema."""
    node: Obj | None = schema.root
    shown_prefix = ""
    if base is not None:
        found = resolve(schema, base)
        if found.problem is not None:
            return Resolution(None)  # the list's own path is reported on its own
        node = _node_at(schema.root, base)
        if node is None or not node.many:
            return Resolution(f"{base!r} is not a list of objects, so its items have no "
                              f"field {path!r}")
    what = f"{schema.system} {schema.collection} field"
    custom: str | None = None
    parts = path.split(".")
    for i, part in enumerate(parts):
        full = ".".join(parts[:i + 1])
        match = _PART.match(part)
        if match is None:
            return Resolution(f"{path!r} is not a native path (use names joined by '.', "
                              "with an optional [index] or [Field=value])")
        name = match["name"]
        if node is None:
            return Resolution(f"{'.'.join(parts[:i])!r} of {schema.system} {schema.collection} "
                              f"holds a value, not an object, so it has no field {name!r}")
        if name not in node.fields:
            where = f" in each item of {base!r}" if base else ""
            return Resolution(f"unknown {what} {full!r}{where}"
                              f"{_nearest(name, node.fields, shown_prefix)}")
        child = node.fields[name]
        selector = match["index"] is not None or match["key"] is not None
        if selector and (child is None or not child.many):
            return Resolution(f"{'.'.join(parts[:i]) + '.' if i else ''}{name!r} of {schema.system} "
                              f"{schema.collection} is not a list; drop the [...]")
        if match["key"] is not None:
            assert child is not None
            if match["key"] not in child.fields:
                return Resolution(f"unknown {what} {name}[{match['key']}=…]: items of {name!r} "
                                  f"have no field {match['key']!r}"
                                  f"{_nearest(match['key'], child.fields, '')}")
            if (name == schema.custom_list and match["key"] == schema.custom_key
                    and schema.custom_value is None):  # free-form ones are any name
                key = match["value"]
                if schema.custom_keys is None:
                    custom = key
                elif key not in schema.custom_keys:
                    hint = _nearest(key, schema.custom_keys, "") if schema.custom_keys else (
                        f" ({schema.system} lists no custom field for {schema.collection})")
                    return Resolution(f"unknown {schema.system} {schema.collection} custom "
                                      f"field {key!r} (not in its /Fields){hint}")
        if child is not None and child.many and not selector and i < len(parts) - 1:
            return Resolution(f"{full!r} of {schema.system} {schema.collection} is a list; "
                              f"pick an item ({full}[0].{parts[i + 1]}) or use a list transform")
        node = child
        shown_prefix = full + "."
    return Resolution(None, custom)


def _node_at(root: Obj, path: str) -> Obj | None:
    node: Obj | None = root
    for part in path.split("."):
        match = _PART.match(part)
        if node is None or match is None:
            return None
        node = node.fields.get(match["name"])
        if node is not None and node.many and (match["index"] or match["key"]):
            node = Obj(node.fields)
    return node


@dataclass
class PathReport:
    problems: list[str]
    unchecked: list[str]  # custom fields that only the system itself can confirm


def check_paths(m: EntityMapping, schemas: Mapping[Side, CollectionSchema | None]
                ) -> PathReport:
    """Problems with the mapping's native paths, one line each: ``where: what``."""
    report = PathReport([], [])
    for ref in mapping_refs(m):
        schema = schemas.get(ref.side)
        if schema is None:
            continue
        found = resolve(schema, ref.path, base=ref.base)
        if found.problem is not None:
            report.problems.append(f"{ref.where}: {found.problem}")
        elif found.custom_key is not None:
            report.unchecked.append(f"{ref.where}: {schema.system} {schema.collection} custom "
                                    f"field {found.custom_key!r}")
    return report


# --- run time -----------------------------------------------------------------------------


def _present(record: Any, parts: Sequence[str]) -> bool | None:
    """Does ``record`` carry the path? ``True`` when the key is there (any value), ``False``
    when an object along it lacks the key, ``None`` when it cannot tell (a null or non-object
    parent, a list too short, no item with that key)."""
    value = record
    for part in parts:
        match = _PART.match(part)
        if match is None or not isinstance(value, dict):
            return None
        if match["name"] not in value:
            return False
        value = value[match["name"]]
        if match["index"] is not None:
            idx = int(match["index"])
            if not isinstance(value, list) or idx >= len(value):
                return None
            value = value[idx]
        elif match["key"] is not None:
            if not isinstance(value, list):
                return None
            hits = [x for x in value if isinstance(x, dict)
                    and str(x.get(match["key"])) == match["value"]]
            if not hits:
                return None
            value = hits[0]
    return True


def unsent_paths(m: EntityMapping, side: Side, records: Iterable[Mapping[str, Any]],
                 schema: CollectionSchema | None = None) -> list[Ref]:
    """Mapped paths of ``side`` that not one of ``records`` carries (empty when there are no
    records). Paths the schema says a listing omits when empty are not judged."""
    records = list(records)
    if not records:
        return []
    refs = [r for r in mapping_refs(m) if r.side == side and r.field is not None]
    out: list[Ref] = []
    for ref in refs:
        full = ref.path if ref.base is None else f"{ref.base}.{ref.path}"
        if schema is not None and not schema.always_carries(full):
            continue
        if ref.base is None:
            targets: Iterable[Any] = records
        else:
            lists = [_items(r, ref.base) for r in records]
            targets = [item for items in lists for item in items]
        seen_any = False
        for target in targets:
            seen_any = True
            if _present(target, ref.path.split(".")) is not False:
                break
        else:
            if seen_any:
                out.append(ref)
    return out


def _items(record: Any, path: str) -> list[Any]:
    value = record
    for part in path.split("."):
        match = _PART.match(part)
        if match is None or not isinstance(value, dict):
            return []
        value = value.get(match["name"])
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []
