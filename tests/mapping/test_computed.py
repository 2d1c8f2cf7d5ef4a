"""Computed fields: the mapping checks, the facts read from a source record, the aggregation
(pure pandas) and the window's cutoff."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from etl.engine.computed import aggregate, cutoff, raw_value, read_fact
from etl.errors import ConfigError, RecordError
from etl.mapping import load_mappings
from etl.mapping.computed import ComputedRef, ComputedSource, Window

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings" / "ploomes_omie"
CUSTOM = "OtherProperties[FieldKey=contact_5E1A0C7B-3D2F-4A8B-9C61-2F7D0B9E4A13].DecimalValue"
SOURCE: dict[str, Any] = {
    "entity": "orders", "side": "erp", "link": "cabecalho.codigo_cliente",
    "amount": "total_pedido.valor_total_pedido",
    "date": {"path": "infoCadastro.dFat", "format": "%d/%m/%Y"},
    "where": {"infoCadastro.faturado": ["S"]}, "window": {"months": 12},
}


def field(agg: str = "sum", transform: str = "decimal", **extra: Any) -> dict[str, Any]:
    return {"owner": "erp", "crm": {"path": CUSTOM, "transform": transform},
            "erp": {"computed": {"source": "sales", "agg": agg}, "transform": transform},
            **extra}


def load_with(tmp_path: Path, fields: dict[str, Any], computed: dict[str, Any] | None = None,
              ) -> None:
    folder = tmp_path / "m"
    shutil.copytree(MAPPINGS, folder)
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data["computed"] = {"sales": SOURCE} if computed is None else computed
    # the shipped computed fields go with the shipped source: only the test's own remain
    data["fields"] = {name: spec for name, spec in data["fields"].items()
                      if "computed" not in (spec.get("erp") or {})} | fields
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    load_mappings(folder)


def test_a_computed_field_loads_and_is_never_written_to_its_side(tmp_path: Path) -> None:
    load_with(tmp_path, {"sales": field()})
    folder = tmp_path / "m"
    m = load_mappings(folder)["customers"]
    assert m.computed_fields("erp") == {"sales": ComputedRef(source="sales", agg="sum")}
    erp = m.fields["sales"].erp
    assert erp is not None and erp.read_only
    assert m.flows("sales", "erp") and not m.flows("sales", "crm")


@pytest.mark.parametrize(("fields", "computed", "fragment"), [
    ({"s": field() | {"erp": {"computed": {"source": "nope", "agg": "sum"},
                              "transform": "decimal"}}}, None,
     "fields.s.erp.computed.source: 'nope' is not a computed source (valid: sales)"),
    ({"s": field(owner="crm")}, None,
     ("fields.s.owner: a computed field is owned by the side it is computed on: set "
      "'owner: erp' (got 'crm')")),
    ({"s": field(agg="max", transform="decimal")}, None,
     "fields.s.erp.transform: 'decimal' cannot read the result of 'max' (valid: date, text)"),
    ({"s": field(agg="avg")}, None,
     "fields.s.erp.computed.agg: Input should be 'sum', 'count' or 'max'"),
    ({"s": field()}, {"sales": {k: v for k, v in SOURCE.items() if k != "amount"}},
     "fields.s.erp.computed.agg: 'sum' needs 'amount' in computed.sales"),
    ({"s": field()}, {"sales": SOURCE | {"entity": "invoices"}},
     "customers: computed.sales.entity: 'invoices' has no mapping (valid: customers"),
    ({"s": field()}, {"sales": SOURCE | {"side": "crm"}},
     ("fields.s.erp.computed.source: 'sales' reads the crm, but this field is computed on "
      "the erp")),
    ({"s": field()}, {"sales": SOURCE | {"window": {"months": 12, "days": 3}}},
     "computed.sales.window: Value error, give exactly one of 'months' or 'days'"),
    ({"s": field() | {"erp": {"computed": {"source": "sales", "agg": "sum"},
                              "path": "x", "transform": "decimal"}}}, None,
     "a 'computed' side has no 'path'"),
])
def test_bad_computed_fields_are_named_at_load(tmp_path: Path, fields: dict[str, Any],
                                               computed: dict[str, Any] | None,
                                               fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_with(tmp_path, fields, computed)
    assert fragment in str(exc.value)


def test_the_source_must_be_read_on_its_side(tmp_path: Path) -> None:
    # products flow only from the ERP: the CRM side of products is never read
    with pytest.raises(ConfigError, match="'products' is not read from the crm"):
        load_with(tmp_path, {"s": {"owner": "crm", "erp": {"path": "observacao"},
                                   "crm": {"computed": {"source": "p", "agg": "count"},
                                           "transform": "int"}}},
                  {"p": {"entity": "products", "side": "crm", "link": "Code",
                         "date": {"path": "CreateDate"}}})


SRC = ComputedSource.model_validate(SOURCE)


def order(**changes: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"cabecalho": {"codigo_cliente": 42},
                           "total_pedido": {"valor_total_pedido": 150.5},
                           "infoCadastro": {"faturado": "S", "dFat": "03/02/2026"}}
    for path, value in changes.items():
        head, _, leaf = path.partition("__")
        rec[head] = {**rec[head], leaf: value}
    return rec


def test_facts_of_an_order() -> None:
    f = read_fact(SRC, "7", order())
    assert (f.key, f.link, f.amount, f.counts) == ("7", "42", 150.5, True)
    assert f.at == datetime(2026, 2, 3, tzinfo=UTC)
    assert read_fact(SRC, "7", order(infoCadastro__faturado="N")).counts is False


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"total_pedido__valor_total_pedido": "abc"},
     "total_pedido.valor_total_pedido: expected a number, got 'abc'"),
    ({"infoCadastro__dFat": "2026-02-03"},
     "infoCadastro.dFat: '2026-02-03' is not a date in the format %d/%m/%Y"),
    ({"infoCadastro__dFat": ""}, "infoCadastro.dFat: empty, so the record cannot be placed"),
])
def test_unreadable_facts_name_the_path_and_value(changes: dict[str, Any],
                                                  fragment: str) -> None:
    with pytest.raises(RecordError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        read_fact(SRC, "7", order(**changes))


def test_the_window_starts_on_the_calendar_day_twelve_months_back() -> None:
    now = datetime(2026, 12, 2, 4, 30, tzinfo=UTC)
    assert cutoff(SRC, now) == datetime(2025, 12, 2, tzinfo=UTC)
    assert cutoff(SRC.model_copy(update={"window": None}), now) is None


def facts(*rows: tuple[str | None, float, str, bool]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["link", "amount", "at", "counts"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


@pytest.mark.parametrize("window", [{"months": 1}, {"months": 12}, {"months": 13},
                                    {"days": 1}, {"days": 30}, {"days": 400}])
@pytest.mark.parametrize("now", [
    datetime(2026, 3, 31, 23, 59, tzinfo=UTC), datetime(2024, 3, 30, 12, tzinfo=UTC),
    datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2025, 12, 31, 2, tzinfo=UTC),
    datetime(2026, 5, 31, 22, tzinfo=timezone(timedelta(hours=-3))),  # 1 June in UTC
])
def test_the_cutoff_is_the_day_pandas_calendar_arithmetic_gives(window: dict[str, int],
                                                                 now: datetime) -> None:
    """The cutoff is worked out without pandas (a run with nothing to do loads none); it is
    the day pandas' DateOffset gives, month ends included (31 March less a month is the last
    day of February)."""
    source = SRC.model_copy(update={"window": Window.model_validate(window)})
    offset = pd.DateOffset(**window)
    expected = (pd.Timestamp(now).tz_convert(UTC) - offset).normalize().to_pydatetime()
    assert cutoff(source, now) == expected


def test_aggregation_sums_counts_and_takes_the_last_date_inside_the_window() -> None:
    refs = {"sales": ComputedRef(source="s", agg="sum"),
            "n": ComputedRef(source="s", agg="count"),
            "last": ComputedRef(source="s", agg="max"),
            "ever": ComputedRef(source="s", agg="max", windowed=False)}
    frame = facts(("a", 100.0, "2026-01-10", True), ("a", 50.25, "2026-03-01", True),
                  ("a", 999.0, "2026-04-01", False),  # not invoiced
                  ("a", 70.0, "2024-05-01", True),  # outside the window
                  ("b", 10.0, "2024-06-01", True),  # only outside the window
                  ("c", 5.0, "2026-02-01", False),  # nothing counted
                  (None, 8.0, "2026-02-01", True))
    out = aggregate(frame, refs, window_start=datetime(2025, 12, 2, tzinfo=UTC))
    assert sorted(out.index) == ["a", "b"]
    a, b = out.loc["a"], out.loc["b"]
    assert (raw_value(refs["sales"], a["sales"]), raw_value(refs["n"], a["n"])) == (150.25, 2)
    assert raw_value(refs["last"], a["last"]) == "2026-03-01"
    assert raw_value(refs["ever"], a["ever"]) == "2026-03-01"
    assert (raw_value(refs["sales"], b["sales"]), raw_value(refs["n"], b["n"])) == (0.0, 0)
    assert raw_value(refs["last"], b["last"]) is None
    assert raw_value(refs["ever"], b["ever"]) == "2024-06-01"


def test_aggregation_of_no_facts_is_empty() -> None:
    out = aggregate(facts(), {"s": ComputedRef(source="s", agg="sum")}, window_start=None)
    assert out.empty
