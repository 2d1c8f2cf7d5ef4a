"""Computed fields in a run (see :mod:`etl.mapping.computed` for the mapping side).

Where the values come from, without reading every order each run:

1. When a run reads a source entity's records (the ERP's orders), the facts each computed
   source needs (customer key, amount, date, passes the filter) are upserted into the state
   (:meth:`Store.record_facts`), before the chunk goes on; a fact that is new or changed marks
   its customer (and its former customer) in the same transaction.
2. When the entity with computed fields (customers) is read on that side, every record read —
   in the window, or by key because it is marked or because the window moved past one of its
   facts — gets its computed values aggregated in pandas from the facts of its key. The values
   are field values like any other: the snapshot diff sees them change, and they are written
   only then.
3. After the entity's run completed, the marks it read are cleared (unless set again
   meanwhile) and the window's cutoff is stored. A run killed before that leaves them: the
   next run computes those records again and the diff drops what did not change.

In one ``ponte sync`` the customers run before the orders; the customers marked by that run's
orders are computed right after the orders, in a pass over the marked keys only.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from loguru import logger

from etl.connectors.base import Record
from etl.engine.model import Job, Seen
from etl.errors import RecordError
from etl.mapping.apply import get_path
from etl.mapping.computed import ComputedRef, ComputedSource
from etl.mapping.models import Side
from etl.mapping.transforms import REGISTRY
from etl.state.computed import FactRow

if TYPE_CHECKING:  # pandas is imported where it is used: a run with nothing to do needs none
    import pandas as pd

# --- pure parts -------------------------------------------------------------------------------

_NAT = -(2**63)  # NaT as int64 nanoseconds (the smallest int64)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def read_fact(source: ComputedSource, key: str, record: Record) -> FactRow:
    """The facts of one source record. Raises :class:`RecordError` naming the path and the
    value when the amount or the date cannot be read."""
    link = _text(get_path(record, source.link)) or None
    counts = all(_text(get_path(record, p)) in [str(v) for v in values]
                 for p, values in source.where.items())
    amount: float | None = None
    if source.amount is not None:
        raw = get_path(record, source.amount)
        if raw is not None and _text(raw) != "":
            try:
                amount = round(float(str(raw).replace(",", ".")), 2)
            except ValueError:
                raise RecordError(f"{source.amount}: expected a number, got {raw!r}",
                                  field=source.amount) from None
    at = read_date(source, record)
    if counts and at is None and source.window is not None:
        raise RecordError(f"{source.date.path}: empty, so the record cannot be placed in the "
                          "window", field=source.date.path)
    return FactRow(key, link, amount, at, counts)


def read_date(source: ComputedSource, record: Record) -> datetime | None:
    """The source record's date as UTC midnight of its calendar day (None when empty)."""
    spec = source.date
    path, raw = spec.path, get_path(record, spec.path)
    if _text(raw) == "" and spec.fallback:
        path, raw = spec.fallback, get_path(record, spec.fallback)
    text = _text(raw)
    if text == "":
        return None
    try:
        parsed = (datetime.fromisoformat(text) if spec.format is None
                  else datetime.strptime(text, spec.format))
    except ValueError:
        raise RecordError(f"{path}: {text!r} is not a date in the format "
                          f"{spec.format or 'ISO 8601'}", field=path) from None
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)


def cutoff(source: ComputedSource, now: datetime) -> datetime | None:
    """The oldest calendar day (UTC midnight) still inside the source's window at ``now``: the
    UTC day of ``now`` less the window's days, or its months (a day past the end of the
    month reached is that month's last day: 31 March less one month is 28 or 29 February)."""
    if source.window is None:
        return None
    w = source.window
    day = now.astimezone(UTC).date()
    if w.months:
        year, month0 = divmod(day.year * 12 + day.month - 1 - w.months, 12)
        last = calendar.monthrange(year, month0 + 1)[1]
        day = date(year, month0 + 1, min(day.day, last))
    else:
        day -= timedelta(days=w.days or 0)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def aggregate(facts: pd.DataFrame, refs: Mapping[str, ComputedRef], *,
              window_start: datetime | None) -> pd.DataFrame:
    """One row per link of ``facts`` that has a counted fact, one column per computed field:
    ``sum`` of the amounts and ``count`` of the counted facts inside the window (0 when none
    is), ``max`` of their dates (NaT when none is); ``windowed: false`` fields take every
    counted fact, however old. The links are factorized once and each aggregation is one
    vectorized pass over their codes."""
    import numpy as np
    import pandas as pd

    counted = facts[facts["counts"].to_numpy(bool) & facts["link"].notna().to_numpy()]
    codes, links = pd.factorize(counted["link"], sort=False)
    n = len(links)
    at = counted["at"].to_numpy("datetime64[ns]").view("int64")
    amount = np.nan_to_num(counted["amount"].to_numpy("float64"))
    everything = np.ones(len(counted), dtype=bool)
    inside = everything if window_start is None else \
        at >= np.datetime64(pd.Timestamp(window_start).tz_convert(None), "ns").view("int64")
    out = pd.DataFrame(index=pd.Index(links, name="link", dtype=object))
    for name, ref in refs.items():
        rows = inside if ref.windowed else everything
        if ref.agg == "sum":
            out[name] = np.round(np.bincount(codes[rows], weights=amount[rows], minlength=n), 2)
        elif ref.agg == "count":
            out[name] = np.bincount(codes[rows], minlength=n).astype("int64")
        else:
            latest = np.full(n, _NAT, dtype="int64")
            np.maximum.at(latest, codes[rows], at[rows])
            out[name] = pd.to_datetime(np.where(latest == _NAT, np.datetime64("NaT", "ns"),
                                                latest.view("datetime64[ns]")), utc=True)
    return out


def raw_value(ref: ComputedRef, value: Any) -> Any:
    """An aggregate as the native value the field's transform reads."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if ref.agg == "max":
        return pd.Timestamp(value).date().isoformat()
    if ref.agg == "count":
        return int(value)
    return float(value)


# --- the engine's hooks -----------------------------------------------------------------------


def record_facts(job: Job, side: Side, records: Mapping[str, Record]) -> None:
    """Keep the facts of records read of an entity that computed sources read (step 1)."""
    if job.opt.dry_run or not records:
        return
    for target, name, source in job.feeds:
        if source.side != side:
            continue
        facts: list[FactRow] = []
        for key, record in records.items():
            try:
                facts.append(read_fact(source, key, record))
            except RecordError as exc:  # it no longer counts; the reason is logged
                logger.bind(entity=job.entity, side=side, key=key).warning(
                    "{} {} {}: not counted in {}.{}: {}", job.entity, side, key, target,
                    name, exc)
                facts.append(FactRow(key, None, None, None, False))
        job.store.record_facts(target, name, facts)


def fill(job: Job, side: Side, seen: Sequence[Seen]) -> None:
    """Set the computed fields of the records read (step 2): aggregated from the facts of
    their keys, then read through the field's transform like a native value."""
    fields = job.m.computed_fields(side)
    if not fields or not seen:
        return
    keys = [s.key for s in seen]
    by_source: dict[str, dict[str, ComputedRef]] = {}
    for name, ref in fields.items():
        by_source.setdefault(ref.source, {})[name] = ref
    for source_name, refs in by_source.items():
        source = job.m.computed[source_name]
        frame = aggregate(job.store.facts_for(job.entity, source_name, keys), refs,
                          window_start=cutoff(source, job.now))
        rows = frame.to_dict("index")
        for s in seen:
            row = rows.get(s.key, {})
            for name, ref in refs.items():
                sf = job.m.fields[name].side(side)
                assert sf is not None
                s.values[name] = REGISTRY[sf.transform].read(
                    raw_value(ref, row.get(name)), sf.args, job.ctx.for_side(side))


def pending(job: Job, side: Side) -> dict[str, None]:
    """Keys of ``side`` whose computed values must be worked out again this run: marked ones,
    and those with a counted fact the window moved past since the last computation. The marks
    read are kept on the job, to be cleared by :func:`finish`."""
    sources = {ref.source for ref in job.m.computed_fields(side).values()}
    if not sources:
        return {}
    job.computed_marks = job.store.computed_marks(job.entity)
    keys = dict.fromkeys(job.computed_marks)
    for name in sorted(sources):
        start = cutoff(job.m.computed[name], job.now)
        before = job.store.computed_cutoff(job.entity, name)
        if start is not None and before is not None and before < start:
            keys.update(dict.fromkeys(job.store.links_crossing(job.entity, name, before, start)))
    return keys


def finish(job: Job, sides: Sequence[Side]) -> None:
    """After the entity's run completed: clear the marks it read, store the cutoffs (step 3)."""
    if job.opt.dry_run:
        return
    for side in sides:
        sources = {ref.source for ref in job.m.computed_fields(side).values()}
        if not sources:
            continue
        job.store.clear_computed_marks(job.entity, job.computed_marks)
        for name in sorted(sources):
            start = cutoff(job.m.computed[name], job.now)
            if start is not None:
                before = job.store.computed_cutoff(job.entity, name)
                if before is None or before < start:
                    job.store.set_computed_cutoff(job.entity, name, start)
