"""Typed mapping models. A mapping file describes one entity of one system pair.

Every *mapped field* has a canonical name (``tax_id``, ``email``) and, per side, the native path
that carries it plus a named transform. Canonical values are strings or ``None`` after
normalization, so both sides compare equal when they hold the same fact.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from etl.errors import ConfigError
from etl.mapping.computed import ComputedRef, ComputedSource

Side = Literal["crm", "erp"]
SIDES: tuple[Side, Side] = ("crm", "erp")
Policy = Literal["crm_wins", "erp_wins", "newest_wins", "manual"]


def other(side: Side) -> Side:
    return "erp" if side == "crm" else "crm"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlsoWrite(Strict):
    """Extra native fields that carry the same value, chosen by another mapped field.

    ``{by: kind, map: {company: CNPJ, person: CPF}}``: whenever the field is written, its value
    also goes to ``CNPJ`` when the record's canonical ``kind`` is ``company`` and to ``CPF`` when
    it is ``person``; the other paths of the map are cleared. ``by`` names a mapped field (its
    canonical value), so the rule holds on both sides of any system pair.
    """

    by: str
    map: dict[str, str]

    @model_validator(mode="after")
    def _paths(self) -> AlsoWrite:
        if not self.map:
            raise ValueError("'map' needs at least one canonical value: native path")
        bad = {k: v for k, v in self.map.items() if not str(v).strip()}
        if bad:
            raise ValueError(f"'map' has empty native paths for {sorted(bad)}")
        return self

    def paths(self) -> list[str]:
        return list(dict.fromkeys(self.map.values()))


class SideField(Strict):
    """Where one mapped field lives in one system."""

    path: str | None = None  # dotted native path, e.g. ``City.IBGECode``, ``cabecalho.etapa``
    # a custom field by its label or key (Ploomes ``Limite de crédito`` or ``contact_<GUID>``),
    # resolved through the system's field list at the start of a run into ``path``
    custom: str | None = None
    value: str | None = None  # with ``custom``: the item property, instead of the type's own
    paths: list[str] | None = None  # several native paths for one value (Omie DDD + number)
    transform: str = "text"
    args: dict[str, Any] = Field(default_factory=dict)
    fallback: str | list[str] | None = None  # native path(s) read, in order, when ``path`` is empty
    also_write: AlsoWrite | None = None  # written too, chosen by another field (CNPJ / CPF)
    max_length: int | None = None  # the system's limit for this field, checked before writing
    read_only: bool = False  # read for comparison, never written
    # a list transform that owns only some items (phone_list): a write keeps the target's
    # other items; false: the written list replaces the target's whole list
    keep_unmapped: bool = True
    # aggregated by ponte from another entity's records (see :mod:`etl.mapping.computed`);
    # such a side is never written
    computed: ComputedRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _computed_is_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("computed") is not None:
            return {**data, "read_only": True}
        return data

    @model_validator(mode="after")
    def _one_path(self) -> SideField:
        if self.computed is not None:
            if self.path is not None or self.paths is not None or self.fallback is not None \
                    or self.also_write is not None or self.custom is not None:
                raise ValueError("a 'computed' side has no 'path', 'paths', 'custom', "
                                 "'fallback' or 'also_write'")
            return self
        if self.custom is not None:
            return self._custom()
        if self.value is not None:
            raise ValueError("'value' goes with 'custom' (the item property of a custom field)")
        if (self.path is None) == (self.paths is None):
            raise ValueError("give exactly one of 'path', 'paths', 'custom' or 'computed'")
        if self.paths is not None and not self.paths:
            raise ValueError("'paths' needs at least one native path")
        if self.fallback is not None and self.paths is not None:
            raise ValueError("'fallback' works with 'path', not with 'paths'")
        if isinstance(self.fallback, list) and (
                not self.fallback or any(not str(p).strip() for p in self.fallback)):
            raise ValueError(f"'fallback' must list native paths, got {self.fallback!r}")
        if self.also_write is not None and self.paths is not None:
            raise ValueError("'also_write' works with 'path', not with 'paths'")
        if self.also_write is not None and self.path in self.also_write.map.values():
            raise ValueError(f"'also_write' maps to {self.path!r}, the field's own path")
        return self

    def _custom(self) -> SideField:
        if not self.custom or not self.custom.strip():
            raise ValueError("'custom' names a custom field by its label or key; got ''")
        clash = [k for k in ("path", "paths", "fallback", "also_write")
                 if getattr(self, k) is not None]
        if clash:
            raise ValueError(f"'custom' stands for the native path: drop {clash[0]!r}")
        return self

    def fallbacks(self) -> list[str]:
        """Native paths read, in order, when ``path`` is empty."""
        if self.fallback is None:
            return []
        return [self.fallback] if isinstance(self.fallback, str) else list(self.fallback)

    def native_paths(self) -> list[str]:
        if self.path is None and self.paths is None and self.custom is not None:
            raise ConfigError(f"custom field {self.custom!r} is not resolved yet (a run reads the "
                              "system's field list first)")
        if self.paths:
            return list(self.paths)
        return [self.path] if self.path is not None else []  # one of them is set (validated)


class FieldSpec(Strict):
    crm: SideField | None = None
    erp: SideField | None = None
    owner: Side | None = None  # only the owner's changes flow; the other side seeds it on create
    # False: not even that — a value only the owner may set (a credit limit, a discount); a
    # value typed on the other side is put back to blank there when ponte creates the record
    seed: bool = True
    required: bool = False  # a source record without it is quarantined

    def side(self, side: Side) -> SideField | None:
        return self.crm if side == "crm" else self.erp


class SystemSpec(Strict):
    collection: str  # native collection, for messages
    external_id_field: str | None = None  # native field holding ponte's external id
    natural_key_field: str | None = None  # native field to search by natural key
    natural_key_fallback_field: str | None = None  # native field to search by the fallback key


class Precondition(Strict):
    """``field`` holds the (canonical) key of a record of ``entity``, which must have the
    ``require``d fields filled before this record may be sent."""

    field: str
    entity: str
    require: list[str]
    message: str | None = None


class Scope(Strict):
    """A pilot scope: only records whose canonical ``field`` is one of ``values`` (compared
    without case; for a list such as tags, holding one of them) are read into the plan or
    written. ``scope: {field: owner, values: [ana@example.com]}``."""

    field: str
    values: list[str] = Field(min_length=1)

    def wanted(self) -> set[str]:
        return {str(v).strip().casefold() for v in self.values}

    def describe(self) -> str:
        return f"{self.field} in {', '.join(self.values)}"


class EntityMapping(Strict):
    entity: str
    description: str = ""
    systems: dict[Side, SystemSpec]
    owner: Side | None = None  # default owner of fields that name none (one-way entities)
    create_in: list[Side] = Field(default_factory=list)
    natural_key: str | None = None
    # matches records whose natural key is empty (with a partner whose natural key is empty too)
    natural_key_fallback: str | None = None
    conflict: Policy = "manual"
    on_match: Literal["crm_wins", "erp_wins", "newest_wins"] = "erp_wins"
    deletes: Literal["ignore", "deactivate", "delete"] = "ignore"
    # canonical field -> value, written where the target's connector spec has no deactivate
    deactivate: dict[str, str] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    create_defaults: dict[Side, dict[str, Any]] = Field(default_factory=dict)
    preconditions: list[Precondition] = Field(default_factory=list)
    # sources of computed fields, by name (see :mod:`etl.mapping.computed`)
    computed: dict[str, ComputedSource] = Field(default_factory=dict)
    scope: Scope | None = None  # a pilot: only these records are synced
    fields: dict[str, FieldSpec]

    @model_validator(mode="after")
    def _scope_field(self) -> EntityMapping:
        if self.scope is not None:
            spec = self.fields.get(self.scope.field)
            if spec is None or spec.crm is None or spec.erp is None:
                both = [f for f, s in self.fields.items() if s.crm and s.erp]
                raise PydanticCustomError("scope", "scope.field: {field} is not a field mapped "
                                          "on both sides (valid: {valid})",
                                          {"field": repr(self.scope.field), "valid": ", ".join(both)})
        return self

    @model_validator(mode="after")
    def _also_write_refs(self) -> EntityMapping:
        """``also_write.by`` names a field this side carries; with a ``value_map`` its map keys
        are that field's canonical values."""
        problems = []
        for name, spec in self.fields.items():
            for side in SIDES:
                sf = spec.side(side)
                if sf is None or sf.also_write is None:
                    continue
                where = f"fields.{name}.{side}.also_write"
                by = sf.also_write.by
                by_sf = self.fields[by].side(side) if by in self.fields else None
                if by == name or by_sf is None:
                    carried = [f for f, s in self.fields.items() if s.side(side) and f != name]
                    problems.append(f"{where}.by: {by!r} is not another field mapped on {side} "
                                    f"(valid: {', '.join(carried)})")
                    continue
                if by_sf.transform == "value_map" and isinstance(by_sf.args.get("map"), dict):
                    valid = sorted({str(v) for v in by_sf.args["map"].values()})
                    for key in sf.also_write.map:
                        if str(key) not in valid:
                            problems.append(f"{where}.map: {key!r} is not a canonical value of "
                                            f"{by!r} (valid: {', '.join(valid)})")
        if problems:  # the message carries the paths: no "Value error," prefix
            raise PydanticCustomError("also_write", "{detail}", {"detail": "; ".join(problems)})
        return self

    # --- derived views -----------------------------------------------------------------------

    def field_owner(self, name: str) -> Side | None:
        return self.fields[name].owner or self.owner

    def flows(self, name: str, source: Side, *, create: bool = False) -> bool:
        """Does field ``name`` flow from ``source`` into the other side?"""
        spec = self.fields[name]
        src, dst = spec.side(source), spec.side(other(source))
        if src is None or dst is None or dst.read_only:
            return False
        owner = self.field_owner(name)
        return owner is None or owner == source or (create and spec.seed)

    def sources(self) -> list[Side]:
        """Sides whose records carry changes that flow out (read each run)."""
        return [s for s in SIDES if any(self.flows(f, s) for f in self.fields)]

    def columns(self) -> list[str]:
        return list(self.fields)

    def computed_fields(self, side: Side) -> dict[str, ComputedRef]:
        """Fields whose value on ``side`` ponte computes, with their aggregation."""
        out: dict[str, ComputedRef] = {}
        for name, spec in self.fields.items():
            sf = spec.side(side)
            if sf is not None and sf.computed is not None:
                out[name] = sf.computed
        return out
