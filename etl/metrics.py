"""Prometheus text-format metrics for node_exporter's textfile collector.

After each run (sync, backfill, each scheduled run) the CLI calls :func:`write_metrics` when
``PONTE_METRICS_FILE`` is set. The file is rebuilt from the state store each time, so runs of
different entities (or processes) never erase each other's series. It is written to a temporary
file in the same directory and moved into place with ``os.replace``, so the collector never reads
half a file.

Series (gauges; ``*_total`` values are the counts of the entity's last run):

* ``ponte_last_run_timestamp_seconds{entity}`` — when the entity's last sync/backfill finished
* ``ponte_last_run_status{entity,status}`` — 1 for that run's status
  (ok|partial|failed|stopped|aborted), else 0; a run still running is never counted
* ``ponte_run_duration_seconds{entity}`` — that run's duration
* ``ponte_records_total{entity,side,kind}`` — kind = read|created|updated|unchanged|quarantined
* ``ponte_watermark_lag_seconds{entity,side}`` — now minus the stored watermark (negative when
  the watermark is in the future)
* ``ponte_watermark_ahead_seconds{entity,side}`` — how far the stored watermark is past where a
  run starting now may read (now minus the safety lag); above 0 that side is stopped: every run
  of the entity fails until ``ponte watermark set/reset``
* ``ponte_api_calls_total{side,kind}`` — API calls (kind = read|write) of the latest run
* ``ponte_quarantine_records{entity}`` — records waiting in quarantine

``ponte serve``'s ``/metrics`` adds (:func:`etl.serve.status_data.serve_samples`):

* ``ponte_webhook_events{status}`` — webhook events stored, by status
  (pending|done|ignored|failed)
* ``ponte_webhook_oldest_pending_age_seconds`` — age of the oldest pending event (0: none)
* ``ponte_alert_active{condition}`` — 1 while the alert condition is active, 0 once cleared

Every series carries ``connection``: the named connection it is of (etl/connections.py), ``""``
for the single-connection settings (Prometheus reads an empty label as absent, so the queries
of a single-connection deployment stay as they were, and no connection name is taken). A named
connection's file is :func:`metrics_path`: one file per connection beside the one set, so
connections sharing ``PONTE_METRICS_FILE`` never overwrite each other's series.

No secrets: labels are connection, entity, side, kind and status names only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from etl.state import RunRow, Store

STATUSES = ("ok", "partial", "failed", "stopped", "aborted")
RECORD_KINDS = ("read", "created", "updated", "unchanged", "quarantined")
RUN_KINDS = ("sync", "backfill")
SIDES = ("crm", "erp")

_HELP = {
    "ponte_last_run_timestamp_seconds": "Unix time the entity's last sync or backfill finished.",
    "ponte_last_run_status": "1 for the status of the entity's last run, 0 for the others.",
    "ponte_run_duration_seconds": "Duration of the entity's last run.",
    "ponte_records_total": "Records per side and kind in the entity's last run.",
    "ponte_watermark_lag_seconds": "Seconds between now and the stored watermark (negative "
                                   "when the watermark is in the future).",
    "ponte_watermark_ahead_seconds": "Seconds the stored watermark is past now minus the safety "
                                     "lag; above 0 the entity's runs fail until the watermark "
                                     "is set or reset.",
    "ponte_api_calls_total": "API calls per side and kind (read|write) in the latest run.",
    "ponte_quarantine_records": "Records waiting in quarantine.",
    "ponte_webhook_events": "Webhook events in the state database by status.",
    "ponte_webhook_oldest_pending_age_seconds": "Seconds since the oldest pending webhook "
                                                "event was received (0 when none is pending).",
    "ponte_alert_active": "1 while the alert condition is active, 0 once it cleared.",
}


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def last_runs(store: Store, entities: Sequence[str], *, scan: int = 500,
              kinds: Iterable[str] = RUN_KINDS,
              statuses: Iterable[str] | None = None) -> dict[str, RunRow]:
    """The latest finished run of each entity among the newest ``scan`` runs (``statuses``:
    only runs that ended so, e.g. the alerts skip a stopped run)."""
    wanted = set(kinds)
    ended = None if statuses is None else set(statuses)
    found: dict[str, RunRow] = {}
    for run in store.runs(limit=scan):
        if run.kind not in wanted or run.finished_at is None:
            continue
        if ended is not None and run.status not in ended:
            continue
        for name in run.entities:
            if name in entities and name not in found:
                found[name] = run
        if len(found) == len(entities):
            break
    return found


def collect(store: Store, entities: Sequence[str], *, now: datetime,
            safety_lag: timedelta = timedelta(0)) -> list[Sample]:
    samples: list[Sample] = []
    runs = last_runs(store, entities)
    for name in entities:
        run = runs.get(name)
        if run is not None:
            assert run.finished_at is not None
            samples.append(Sample("ponte_last_run_timestamp_seconds", {"entity": name},
                                  run.finished_at.timestamp()))
            for status in STATUSES:
                samples.append(Sample("ponte_last_run_status",
                                      {"entity": name, "status": status},
                                      1.0 if run.status == status else 0.0))
            samples.append(Sample("ponte_run_duration_seconds", {"entity": name},
                                  float(run.report.get("duration_s", 0.0))))
            counts = run.report.get("entities", {}).get(name, {})
            for side in SIDES:
                for kind in RECORD_KINDS:
                    samples.append(Sample("ponte_records_total",
                                          {"entity": name, "side": side, "kind": kind},
                                          float(counts.get(side, {}).get(kind, 0))))
    marks = [w for w in store.watermarks() if w.entity in entities and w.value is not None]
    for row in marks:
        assert row.value is not None
        samples.append(Sample("ponte_watermark_lag_seconds",
                              {"entity": row.entity, "side": row.system},
                              (now - row.value).total_seconds()))
    for row in marks:
        assert row.value is not None
        samples.append(Sample("ponte_watermark_ahead_seconds",
                              {"entity": row.entity, "side": row.system},
                              max(0.0, (row.value - (now - safety_lag)).total_seconds())))
    latest: RunRow | None = None
    for run in store.runs(limit=50):
        if run.kind in RUN_KINDS and run.finished_at is not None:
            latest = run
            break
    if latest is not None:
        for side, calls in sorted(latest.report.get("api_calls", {}).items()):
            for kind, n in sorted(calls.items()):
                samples.append(Sample("ponte_api_calls_total", {"side": side, "kind": kind},
                                      float(n)))
    counts_q = store.count_quarantine()
    for name in entities:
        samples.append(Sample("ponte_quarantine_records", {"entity": name},
                              float(counts_q.get(name, 0))))
    return samples


def metrics_path(path: Path, connection: str | None) -> Path:
    """Where a connection's metrics go: ``ponte.prom`` -> ``ponte.acme.prom`` for connection
    ``acme`` (node_exporter's textfile collector reads every ``*.prom`` of the folder)."""
    if connection is None:
        return path
    return path.with_name(f"{path.stem}.{connection}{path.suffix or '.prom'}")


def render(samples: Sequence[Sample], *, connection: str | None = None) -> str:
    """Prometheus text exposition format, one HELP/TYPE block per metric name; every series
    labelled ``connection`` (``""``: the single-connection settings)."""
    samples = [Sample(s.name, {"connection": connection or "", **s.labels}, s.value)
               for s in samples]
    lines: list[str] = []
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s.name, []).append(s)
    for name, group in by_name.items():
        lines.append(f"# HELP {name} {_HELP.get(name, name)}")
        lines.append(f"# TYPE {name} gauge")
        for s in group:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels.items())
            lines.append(f"{name}{{{labels}}} {_number(s.value)}" if labels
                         else f"{name} {_number(s.value)}")
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, store: Store, entities: Sequence[str], *, now: datetime,
                  safety_lag: timedelta = timedelta(0), connection: str | None = None) -> Path:
    """Rebuild the metrics file atomically (temp file in the same directory + os.replace);
    a named connection's own file (:func:`metrics_path`). Returns the path written."""
    text = render(collect(store, entities, now=now, safety_lag=safety_lag),
                  connection=connection)
    path = metrics_path(Path(path), connection)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)
