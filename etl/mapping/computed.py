"""Computed fields: values a side does not store on the record itself but ponte aggregates from
another entity's records of that side — a customer's sales volume is the sum of its invoiced
orders over the last 12 months, its last purchase the date of the newest one.

A mapping declares the *source* once, under ``computed:``, and each computed field names it and
an aggregation on the side that owns it::

    computed:
      invoiced_orders:
        entity: orders                       # the source entity, read from ``side`` every run
        side: erp
        link: cabecalho.codigo_cliente       # native path: the key of *this* entity's record
        amount: total_pedido.valor_total_pedido
        date: {path: infoCadastro.dFat, format: "%d/%m/%Y"}
        where: {infoCadastro.faturado: ["S"], infoCadastro.cancelado: ["N", ""]}
        window: {months: 12}                 # relative to the run's time
    fields:
      sales_12m:
        owner: erp
        crm: {path: "OtherProperties[FieldKey=contact_…].DecimalValue", transform: decimal}
        erp: {computed: {source: invoiced_orders, agg: sum}, transform: decimal}

The paths are native paths of the source records (not fields of the source's mapping), so
orders entered in the ERP itself count as well as those ponte wrote there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    from etl.mapping.models import EntityMapping

Agg = Literal["sum", "count", "max"]
#: what each aggregation gives, for the transform checks
AGG_KIND: dict[str, str] = {"sum": "number", "count": "number", "max": "date"}
TRANSFORMS_FOR: dict[str, tuple[str, ...]] = {"number": ("decimal", "int", "text"),
                                              "date": ("date", "text")}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatePath(_Strict):
    """Where a source record carries its date, and how it is written there."""

    path: str
    format: str | None = None  # strftime format of the native text (``%d/%m/%Y``); ISO if None
    fallback: str | None = None  # read when ``path`` is empty


class Window(_Strict):
    """How far back from the run's time a source record counts: months or days."""

    months: int | None = None
    days: int | None = None

    @model_validator(mode="after")
    def _one(self) -> Window:
        if (self.months is None) == (self.days is None):
            raise ValueError("give exactly one of 'months' or 'days'")
        if (self.months or self.days or 0) < 1:
            raise ValueError("the window must be at least 1 month or 1 day")
        return self


class ComputedSource(_Strict):
    """Records of another entity, read on one side, whose facts ponte keeps to aggregate."""

    entity: str
    side: Literal["crm", "erp"] = "erp"
    link: str  # native path of the key of the record the facts belong to
    date: DatePath
    amount: str | None = None  # native path of the number ``sum`` adds up
    where: dict[str, list[str]] = {}  # native path -> values that count (every path must match)
    window: Window | None = None  # None: every record counts, however old

    @model_validator(mode="after")
    def _paths(self) -> ComputedSource:
        for path in (self.link, self.date.path, self.amount, *self.where):
            if path is not None and not path.strip():
                raise ValueError("native paths must not be empty")
        empty = [p for p, values in self.where.items() if not values]
        if empty:
            raise ValueError(f"'where' lists no values for {empty}")
        return self


class ComputedRef(_Strict):
    """A field's value on its side: an aggregation of a declared source, per record."""

    source: str
    agg: Agg
    windowed: bool = True  # False: over every record of the source, however old


def check_computed(m: EntityMapping) -> list[str]:
    """Problems of one mapping's computed fields, each naming the path inside the file, the bad
    value and what would be valid."""
    problems: list[str] = []
    for name, spec in m.fields.items():
        for side in ("crm", "erp"):
            sf = spec.side(side)
            if sf is None or sf.computed is None:
                continue
            ref, where = sf.computed, f"fields.{name}.{side}.computed"
            source = m.computed.get(ref.source)
            if source is None:
                valid = ", ".join(m.computed) or "none declared under 'computed:'"
                problems.append(f"{where}.source: {ref.source!r} is not a computed source "
                                f"(valid: {valid})")
                continue
            if source.side != side:
                problems.append(f"{where}.source: {ref.source!r} reads the {source.side}, "
                                f"but this field is computed on the {side}")
            owner = m.field_owner(name)
            if owner != side:
                problems.append(f"fields.{name}.owner: a computed field is owned by the side "
                                f"it is computed on: set 'owner: {side}' (got {owner!r})")
            other_sf = spec.side("erp" if side == "crm" else "crm")
            if other_sf is None or other_sf.computed is not None:
                problems.append(f"fields.{name}: a computed field needs the other side's path "
                                "to write the value into")
            if ref.agg == "sum" and source.amount is None:
                problems.append(f"{where}.agg: 'sum' needs 'amount' in computed."
                                f"{ref.source} (the native path of the number to add up)")
            kinds = TRANSFORMS_FOR[AGG_KIND[ref.agg]]
            if sf.transform not in kinds:
                problems.append(f"fields.{name}.{side}.transform: {sf.transform!r} cannot "
                                f"read the result of {ref.agg!r} (valid: {', '.join(kinds)})")
            if ref.windowed is False and source.window is None:
                problems.append(f"{where}.windowed: computed.{ref.source} has no window")
    return problems


def check_sources(mappings: Mapping[str, EntityMapping]) -> list[str]:
    """Each computed source reads an entity that is mapped and read on the source's side every
    run (its facts are kept from those reads)."""
    problems: list[str] = []
    for entity, m in mappings.items():
        for name, source in m.computed.items():
            where = f"{entity}: computed.{name}.entity"
            feeder = mappings.get(source.entity)
            if feeder is None:
                problems.append(f"{where}: {source.entity!r} has no mapping (valid: "
                                f"{', '.join(mappings)})")
            elif source.side not in feeder.sources():
                problems.append(f"{where}: {source.entity!r} is not read from the "
                                f"{source.side} (no field of it flows from there), so its "
                                "records are never seen")
    return problems


def feeds(mappings: Mapping[str, EntityMapping], entity: str
          ) -> list[tuple[str, str, ComputedSource]]:
    """The computed sources that read ``entity``: (entity computed, source name, source)."""
    return [(target, name, source) for target, m in mappings.items()
            for name, source in m.computed.items() if source.entity == entity]
