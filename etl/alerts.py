"""Alerts: conditions an operator must hear about, announced once when they start and once
when they clear — not on every run.

Conditions are worked out from the state database alone (no vendor is asked anything):

* ``run_failed:<entity>`` — the entity's last sync, backfill or event run failed or was aborted;
  clears when a later one ends ok or partial (a stopped run changes nothing);
* ``quarantine`` — more records wait in quarantine than ``PONTE_ALERTS__QUARANTINE_THRESHOLD``;
* ``drift:<entity>`` — the entity's last verify found drift (after ``--fix``: drift it did not
  repair); clears when a later verify finds none;
* ``lag:<entity>:<side>`` — the side's watermark is older than ``PONTE_ALERTS__LAG_THRESHOLD_S``
  (0: never);
* ``backlog`` — a webhook event has waited pending longer than
  ``PONTE_ALERTS__BACKLOG_STALL_S`` (0: never).

:func:`evaluate_alerts` stores them (:class:`etl.state.alerts.AlertStore` claims each start and
clear, so that two evaluations at once never both announce one) and sends what is to be
announced, in one message per channel (:mod:`etl.alert_delivery`). A message no channel took is
sent again at the next evaluation; with no channel configured the conditions are still stored
(``ponte alerts``, the status page) and nothing is sent — their announcements wait, so a
channel configured later hears of the conditions in force at its first evaluation. The CLI evaluates after every run it
records; ``ponte serve`` calls :func:`evaluate_alerts` periodically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from etl import ops
from etl.alert_delivery import ChannelResult, compose, send, send_test, when
from etl.mapping import EntityMapping, load_mappings
from etl.metrics import last_runs
from etl.settings import Settings
from etl.settings_serve import AlertSettings
from etl.state import AlertRow, RunRow, Store, Transition

RUN_KINDS = ("sync", "backfill", "event")
VERIFY_KINDS = ("verify", "verify-fix")

__all__ = ["AlertOutcome", "alert_dict", "conditions", "evaluate_alerts", "evaluate_in",
           "evaluate_safely", "send_test", "span"]


@dataclass(frozen=True)
class AlertOutcome:
    """One evaluation: the transitions it made, the announcements it sent (or gave back to be
    sent again), and what each channel answered."""

    transitions: list[Transition] = field(default_factory=list)
    announced: list[AlertRow] = field(default_factory=list)
    pending: list[AlertRow] = field(default_factory=list)  # no channel took them: retried
    channels: list[ChannelResult] = field(default_factory=list)


def evaluate_alerts(settings: Settings, now: datetime) -> AlertOutcome:
    """Evaluate every condition against the state of ``settings`` at ``now``, store the
    transitions and send the announcements. Delivery problems are logged as warnings and
    retried next time; a state database that cannot be opened raises ``ConfigError``."""
    mappings = load_mappings(settings.mappings_dir)
    with settings.open_state() as store:
        return evaluate_in(store, mappings, settings.alerts, now=now)


def evaluate_safely(settings: Settings, now: datetime) -> AlertOutcome | None:
    """:func:`evaluate_alerts` after a run: any problem (the state unreadable, a bug) is
    logged as a warning and None returned, so that an alert never fails the run's command."""
    try:
        return evaluate_alerts(settings, now)
    except Exception as exc:  # noqa: BLE001 - an alert problem must not fail a run
        logger.warning("alerts not evaluated: {}: {}", type(exc).__name__,
                       " ".join(str(exc).split()))
        return None


def evaluate_in(store: Store, mappings: dict[str, EntityMapping], cfg: AlertSettings, *,
                now: datetime) -> AlertOutcome:
    """:func:`evaluate_alerts` on an open store."""
    transitions = store.apply_conditions(conditions(store, mappings, cfg, now=now), now=now)
    for t in transitions:
        logger.bind(condition=t.condition).log(
            "WARNING" if t.started else "INFO", "alert {}: {}",
            "started" if t.started else "cleared", t.condition)
    if cfg.webhook_url is None and cfg.smtp_url is None:
        return AlertOutcome(transitions)
    claimed = store.claim_announcements(now=now)
    if not claimed:
        return AlertOutcome(transitions)
    subject, text = compose(claimed)
    results = send(cfg, subject, text)
    if any(r.ok for r in results):
        return AlertOutcome(transitions, claimed, [], results)
    store.release_announcements(claimed)
    return AlertOutcome(transitions, [], claimed, results)


def conditions(store: Store, mappings: dict[str, EntityMapping], cfg: AlertSettings, *,
               now: datetime) -> dict[str, str]:
    """Every condition true at ``now``: its name -> what an operator reads about it."""
    names = list(mappings)
    found: dict[str, str] = {}
    runs = last_runs(store, names, kinds=RUN_KINDS,
                     statuses=("ok", "partial", "failed", "aborted"))
    for name, run in sorted(runs.items()):
        if run.status in ("failed", "aborted"):
            found[f"run_failed:{name}"] = _run_failed(name, run)
    waiting = store.count_quarantine()
    if sum(waiting.values()) > cfg.quarantine_threshold:
        found["quarantine"] = _quarantine(waiting, cfg.quarantine_threshold)
    verifies = last_runs(store, names, kinds=VERIFY_KINDS, statuses=("ok", "partial"))
    for name, run in sorted(verifies.items()):
        counts = run.report.get("entities", {}).get(name, {})
        left = int(counts.get("drift", 0)) - (int(counts.get("fixed", 0))
                                              if run.kind == "verify-fix" else 0)
        if left > 0:
            found[f"drift:{name}"] = _drift(name, run, counts, left)
    if cfg.lag_threshold_s > 0:
        for w in ops.watermarks(store, mappings, now=now):
            if w.value is not None and w.lag_s is not None and w.lag_s > cfg.lag_threshold_s:
                found[f"lag:{w.entity}:{w.side}"] = _lag(w, cfg.lag_threshold_s)
    if cfg.backlog_stall_s > 0:
        count, oldest = store.stalled_events(now - timedelta(seconds=cfg.backlog_stall_s))
        if count and oldest is not None:
            found["backlog"] = (
                f"{count} webhook event(s) received more than {span(cfg.backlog_stall_s)} ago "
                f"still wait to be processed (the oldest since {when(oldest)}). Is `ponte serve` "
                "running and able to reach both systems? See `ponte status` and `ponte runs`.")
    return found


def _run_failed(name: str, run: RunRow) -> str:
    error = " ".join(str(run.report.get("error") or "no error recorded").split())
    if len(error) > 300:
        error = error[:297] + "..."
    return (f"the last {run.kind} of {name} (run {run.id[:8]}, ended {when(run.finished_at)}) "
            f"{run.status}: {error}. See `ponte runs show {run.id[:8]}`; the next run of "
            f"{name} retries (`ponte sync {name}`).")


def _quarantine(waiting: dict[str, int], threshold: int) -> str:
    per = ", ".join(f"{e} {n}" for e, n in sorted(waiting.items()))
    return (f"{sum(waiting.values())} records wait in quarantine, over the threshold of "
            f"{threshold} ({per}). See `ponte quarantine list`; fix the cause, then `ponte "
            "quarantine retry` or `ponte quarantine drop ID`.")


def _drift(name: str, run: RunRow, counts: dict[str, Any], left: int) -> str:
    kinds = ("missing_in_crm", "missing_in_erp", "mismatched", "duplicates", "unlinked",
             "vanished")
    parts = ", ".join(f"{k} {counts[k]}" for k in kinds if counts.get(k))
    return (f"the last verify of {name} (run {run.id[:8]}, ended {when(run.finished_at)}) "
            f"found {left} difference(s) between the CRM and the ERP left unrepaired ({parts}). "
            f"See `ponte verify {name}`; `ponte verify {name} --fix` repairs what the mapping "
            "allows.")


def _lag(w: ops.WatermarkView, threshold: int) -> str:
    assert w.value is not None and w.lag_s is not None
    return (f"the {w.side} watermark of {w.entity} is {span(w.lag_s)} old (threshold "
            f"{span(threshold)}): changes made on {w.side} after {when(w.value)} may not be "
            f"synced yet. See `ponte status` and `ponte runs` (is the schedule running, do runs "
            f"fail?) and `ponte watermark show {w.entity}`.")


def span(seconds: float) -> str:
    """A duration in words an operator reads at a glance: ``2h 5m``, ``40s``, ``3d 4h``."""
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes and not days else "", f"{secs}s" if s < 600 and secs else ""]
    return " ".join(p for p in parts if p) or "0s"


def alert_dict(row: AlertRow) -> dict[str, Any]:
    """One condition as ``ponte alerts --json`` prints it."""
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {"condition": row.condition, "active": row.active, "since": iso(row.since),
            "detail": row.detail, "notified_at": iso(row.notified_at),
            "cleared_at": iso(row.cleared_at)}
