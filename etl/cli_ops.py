"""Operator commands of ``ponte``: run, backfill, status, watermark, runs, quarantine.

Thin, like :mod:`etl.cli`: parse, call one :mod:`etl.ops` function, render (rich or ``--json``).
:func:`register` adds them to the main app and makes ``ponte sync`` refresh the metrics file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self, TypeVar

import click
import typer
from loguru import logger
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from etl.cli import announce, err, handle_errors, out, settings_or_exit
from etl.exitcodes import Exit, for_status
from etl.interrupt import stop_on_signals

F = TypeVar("F", bound=Callable[..., Any])
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

watermark_app = typer.Typer(
    help="Show, set or reset the per-entity, per-side watermarks (changes are confirmed, "
         "logged and recorded in `ponte runs`).", no_args_is_help=True)
runs_app = typer.Typer(help="The run history (sync, backfill, watermark changes).")
quarantine_app = typer.Typer(
    help="Records that could not be synced: list, show, retry, drop.", no_args_is_help=True)


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _state(*, writes: bool = False) -> Iterator[tuple[Any, Any, Any]]:
    """(settings, store, mappings) for commands that need no connector. ``writes``: the
    command changes the state, so a state built with other systems stops it (exit 2) and a
    state not bound yet is bound to the configured systems (see :mod:`etl.binding`)."""
    from etl import binding
    from etl.mapping import load_mappings
    from etl.state.store import Store

    settings = settings_or_exit()
    mappings = load_mappings(settings.mappings_dir)
    with Store.open(settings.state_url) as store:
        if writes:
            binding.ensure(store, settings, bind=True, now=_now())
        yield settings, store, mappings


def _json(data: Any) -> None:
    """One JSON document on stdout, never wrapped (a rich console wraps at its width)."""
    import json

    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m and not d)
    parts += [f"{sec}s"] * bool(not d and not h)
    return sign + " ".join(parts)


def _ts(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def _short(value: datetime | None) -> str:
    return value.astimezone().strftime("%m-%d %H:%M:%S") if value else "-"


def _confirm(question: str, yes: bool) -> None:
    """Ask, unless ``--yes``. No answer (stdin closed) or no -> nothing changes, exit 2."""
    if yes:
        return
    try:
        ok = typer.confirm(question, default=False, err=True)
    except (click.exceptions.Abort, typer.Abort):
        err.print("\nrefused: no confirmation (stdin is closed or not a terminal); nothing "
                  "changed — pass --yes to confirm non-interactively", highlight=False)
        raise typer.Exit(Exit.CONFIG) from None
    if not ok:
        err.print("not confirmed; nothing changed", highlight=False)
        raise typer.Exit(Exit.CONFIG)


# ------------------------------------------------------------------------------------- run


def run(
    entities: Annotated[list[str] | None, typer.Argument(
        help="Entities to schedule (default: all mapped).")] = None,
    run_now: Annotated[bool, typer.Option(
        "--now", help="Also run each entity once right away.")] = False,
    misfire_grace: Annotated[int, typer.Option(
        help="Seconds a late run may still start; later, it waits for the next time.")] = 600,
) -> None:
    """Run as a daemon: sync each entity on its own schedule until SIGTERM/SIGINT.

    Schedules come from PONTE_SCHEDULE_CUSTOMERS / _PRODUCTS / _ORDERS: a 5-field crontab
    expression in server local time ('*/5 * * * *') or an interval 'every:SECONDS'
    ('every:300'). Runs never overlap (one at a time, max one instance per entity, missed
    runs coalesced). On SIGTERM/SIGINT the current run stops after its current chunk (whole
    chunks committed, watermark not moved; the next run picks up from there) and ponte exits
    0. Writes PONTE_METRICS_FILE after each run when set."""
    from etl import api, ops, scheduler

    settings = settings_or_exit()
    # native paths checked before the daemon starts, not at its first scheduled run
    mappings = api.check_mappings(settings, entities=entities).mappings
    names = list(entities or mappings)
    schedules = {n: getattr(settings, f"schedule_{n}", None) or "" for n in names}
    missing = [n for n, s in schedules.items() if not s]
    if missing:
        from etl.errors import ConfigError

        raise ConfigError(f"no schedule for {', '.join(missing)} (set PONTE_SCHEDULE_"
                          f"{missing[0].upper()})")
    ops.check_binding(settings)
    scheduler.serve(
        schedules, lambda name, stop: ops.scheduled_sync(settings, name, stop) and None,
        misfire_grace_s=misfire_grace, run_now=run_now)
    raise typer.Exit(Exit.OK)


# ------------------------------------------------------------------------------------- backfill


class _RateColumn(ProgressColumn):
    """Average records/second since the phase began (pages arrive in bursts, so the
    instantaneous speed would swing wildly)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        speed = task.completed / elapsed if elapsed > 0.5 else None
        return Text(f"{speed:,.0f} rec/s" if speed else "- rec/s", style="progress.data.speed")


class _Progress:
    """The (phase, n) progress callback: a rich bar on a terminal, log lines otherwise.
    Phases are ``"ENTITY: read SIDE"`` and ``"ENTITY: write"`` (records read, records written)."""

    def __init__(self, *, live: bool, settings: Any = None, every_s: float = 5.0,
                 label: str = "backfill") -> None:
        self.live = live
        self.label = label
        self.settings = settings
        self.every_s = every_s
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.last_log = self.started
        self.bar: Progress | None = None
        self.tasks: dict[str, Any] = {}
        if live:
            self.bar = Progress(
                SpinnerColumn(), TextColumn("{task.description:<9}"), BarColumn(),
                TextColumn("{task.completed:>9,.0f} records"), _RateColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=out, transient=False, speed_estimate_period=10.0)

    def __enter__(self) -> Self:
        if self.bar is not None:
            self.bar.start()
            self._logs_to(_ConsoleSink(self.bar.console))  # log lines above the bar
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
            self._logs_to(None)
        else:
            self._log(final=True)

    def __call__(self, phase: str, n: int) -> None:
        self.counts[phase] = self.counts.get(phase, 0) + n
        if self.bar is not None:
            if phase not in self.tasks:
                for done in self.tasks.values():  # the previous phase is over
                    self.bar.stop_task(done)
                self.tasks[phase] = self.bar.add_task(phase, total=None)
            self.bar.update(self.tasks[phase], advance=n)
        elif time.monotonic() - self.last_log >= self.every_s:
            self._log()

    def _logs_to(self, sink: Any) -> None:
        if self.settings is None:
            return
        from etl.logging import configure

        configure(secrets=self.settings.secrets(), fmt=self.settings.log_format,
                  level=self.settings.log_level, sink=sink)

    def _log(self, *, final: bool = False) -> None:
        self.last_log = time.monotonic()
        elapsed = max(self.last_log - self.started, 1e-9)
        parts = [f"{p} {n:,} ({n / elapsed:,.0f}/s)" for p, n in self.counts.items()]
        logger.info("{} {}: {} in {:.0f}s", self.label, "done" if final else "progress",
                    ", ".join(parts) or "nothing yet", elapsed)


class _ConsoleSink:
    """A file-like log sink that prints through a rich console (above a live progress bar)."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def write(self, text: str) -> None:
        self.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)

    def flush(self) -> None:
        pass


@contextmanager
def terminal_progress(settings: Any, *, enabled: bool = True
                      ) -> Iterator[Callable[[str, int], None] | None]:
    """The progress callback of a run (``ponte sync``/``plan``): live bars (records read per
    entity and side, records written) on a terminal; ``None`` elsewhere, where the run's log
    lines already say what each entity did."""
    if not (enabled and out.is_terminal):
        yield None
        return
    with _Progress(live=True, settings=settings, label="sync") as progress:
        yield progress


def backfill(
    entity: Annotated[str, typer.Argument(help="customers, products or orders.")],
    since: Annotated[str | None, typer.Option(
        help="Window start, inclusive: ISO 8601 (no offset = UTC) or a span ago (7d, 6h). "
             "Default: the beginning.")] = None,
    until: Annotated[str | None, typer.Option(
        help="Window end, exclusive (same forms). Default: now.")] = None,
    side: Annotated[str | None, typer.Option(
        help="Read only this side: crm or erp (default: every source side).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only: write nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Re-sync ENTITY over an explicit window: the same pipeline as sync, but the stored
    watermark is neither read nor moved. Safe to interrupt (Ctrl-C stops after the current
    chunk) and to re-run: records already synced are found unchanged. Shows a progress bar
    (records, rate) on a terminal, log lines otherwise."""
    from etl import ops
    from etl.mapping.models import SIDES
    from etl.render import print_report

    settings = settings_or_exit()
    now = _now()
    if side is not None and side not in SIDES:
        from etl.errors import ConfigError

        raise ConfigError(f"--side: {side!r} is not a side; use crm or erp")
    request = ops.BackfillRequest(
        entity,
        since=ops.parse_time(since, now=now, option="--since") if since else None,
        until=ops.parse_time(until, now=now, option="--until") if until else None,
        sides=(side,) if side else None,  # type: ignore[arg-type]
        dry_run=dry_run,
    )
    with stop_on_signals(announce, hint="; re-run the same backfill to finish") as stop, \
            _Progress(
            live=out.is_terminal and not as_json, settings=settings) as progress:
        report = ops.backfill(settings, request, progress=progress, should_stop=stop.is_set)
    if not dry_run:
        ops.publish_metrics(settings, now=_now())
    if as_json:
        _json(report.as_dict(with_changes=dry_run))
    else:
        print_report(report, out, show_changes=dry_run)
    raise typer.Exit(for_status(report.status))


# ------------------------------------------------------------------------------------- status


def status(as_json: Json = False) -> None:
    """Per entity and side: watermark and its lag behind now, the last run (when, status,
    counts), quarantined records, the next scheduled run."""
    from etl import ops

    with _state() as (settings, store, mappings):
        report = ops.status(store, mappings, settings, now=_now())
    if as_json:
        _json(report.as_dict())
        return
    table = Table(title=f"ponte status — {_ts(report.now)}")
    for col in ("entity", "side", "watermark (lag)", "last run", "read/new/upd", "quar.",
                "next run"):
        table.add_column(col, justify="right" if col in ("read/new/upd", "quar.") else "left")
    for e in report.entities:
        last = e.last_run
        for i, s in enumerate(e.sides or []):
            counts = last.counts.get(s.side, {}) if last else {}
            first = i == 0
            when = ""
            if first:
                when = (f"{_short(last.finished_at or last.started_at)} {last.kind} "
                        f"{last.status}" if last else "never")
                when += " (running now)" if e.running else ""
            mark = f"{_short(s.watermark)} ({_ago(s.lag_s)})" if s.watermark else "none"
            if s.ahead_s is not None:
                mark = f"{_ts(s.watermark)} (AHEAD {_ago(s.ahead_s)})"
            table.add_row(
                e.entity if first else "", s.side, mark,
                when,
                "/".join(str(counts.get(k, "-")) for k in ("read", "created", "updated"))
                if last else "-",
                str(s.quarantined),
                f"{_short(e.next_run)} ({e.schedule})" if first and e.schedule else "",
            )
    out.print(table)
    for e in report.entities:
        for s in e.sides:
            if s.ahead_s is not None and s.watermark is not None:
                err.print(f"{e.entity} {s.side}: the watermark {s.watermark.isoformat()} is "
                          f"ahead of now (minus the safety lag) by {_ago(s.ahead_s)}: runs of "
                          f"{e.entity} fail until `ponte watermark set {e.entity} --side "
                          f"{s.side} --to T` or `ponte watermark reset {e.entity} --side "
                          f"{s.side}`", highlight=False, markup=False)
    if report.binding and not report.binding["matches"]:
        err.print("this state was built with other systems than the configured ones — sync, "
                  "plan, backfill, verify and state changes refuse to run (see `ponte db "
                  "rebind --help`):\n  " + "\n  ".join(report.binding["differences"]),
                  highlight=False, markup=False)


# ------------------------------------------------------------------------------------- watermark


@watermark_app.command("show")
@handle_errors
def watermark_show(
    entity: Annotated[str | None, typer.Argument(help="One entity (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """The stored watermarks: up to when each side's changes are fully processed."""
    from etl import ops

    with _state() as (_settings, store, mappings):
        rows = ops.watermarks(store, mappings, entity, now=_now())
    if as_json:
        _json([{"entity": r.entity, "side": r.side,
                "watermark": r.value.isoformat() if r.value else None,
                "updated_at": r.updated_at.isoformat() if r.updated_at else None,
                "lag_s": r.lag_s} for r in rows])
        return
    table = Table(title="watermarks")
    for col in ("entity", "side", "watermark (UTC)", "lag", "changed at"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.entity, r.side, r.value.isoformat() if r.value else "(none: from the "
                      "beginning)", _ago(r.lag_s), _ts(r.updated_at))
    out.print(table)


def _apply_watermark(entity: str, side: str | None, to: Any, yes: bool,
                     as_json: bool) -> None:
    from etl import ops

    with _state(writes=True) as (settings, store, mappings):
        now = _now()
        value = ops.parse_time(to, now=now, option="--to") if to is not None else None
        lag = timedelta(seconds=settings.safety_lag_s)
        changes = ops.plan_watermark(store, mappings, entity, side=side, to=value, now=now,
                                     safety_lag=lag)
        for c in changes:
            err.print(c.describe(), highlight=False, markup=False)
        what = "set" if value is not None else "reset"
        note = "" if value is not None else " (the next sync re-reads everything; nothing is " \
                                            "duplicated: unchanged records diff as unchanged)"
        _confirm(f"{what} {len(changes)} watermark(s){note}?", yes)
        result = ops.apply_watermark(store, changes, now=now, lease_s=float(settings.lock_lease_s),
                                     safety_lag=lag)
    if as_json:
        _json(result.as_dict())
    else:
        out.print(f"done (recorded as run {result.run_id[:8]}): "
                  + "; ".join(c.describe() for c in result.changes), highlight=False)


@watermark_app.command("set")
@handle_errors
def watermark_set(
    entity: Annotated[str, typer.Argument(help="customers, products or orders.")],
    side: Annotated[str, typer.Option(help="crm or erp.")],
    to: Annotated[str, typer.Option(
        help="New value: ISO 8601 (no offset = UTC) or a span ago (2h, 7d).")],
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Set one side's watermark: the next sync reads that side's changes from there (minus the
    lookback). Asks first unless --yes; refuses without a terminal."""
    _apply_watermark(entity, side, to, yes, as_json)


@watermark_app.command("reset")
@handle_errors
def watermark_reset(
    entity: Annotated[str, typer.Argument(help="customers, products or orders.")],
    side: Annotated[str | None, typer.Option(help="crm or erp (default: both).")] = None,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Forget ENTITY's watermark(s): the next sync re-reads from the beginning. Records that
    did not change are found unchanged by the snapshot diff, so nothing is duplicated. Only
    this entity is touched. Asks first unless --yes."""
    _apply_watermark(entity, side, None, yes, as_json)


# ------------------------------------------------------------------------------------- runs


def _runs_table(rows: list[Any]) -> Table:
    table = Table(title="runs (newest first)")
    for col in ("id", "kind", "status", "started", "duration", "entities", "writes",
                "quarantined", "note"):
        table.add_column(col)
    for r in rows:
        rep = r.report
        writes = sum(e.get(s, {}).get(k, 0) for e in rep.get("entities", {}).values()
                     for s in ("crm", "erp") for k in ("created", "updated"))
        quar = sum(e.get(s, {}).get("quarantined", 0) for e in rep.get("entities", {}).values()
                   for s in ("crm", "erp"))
        dur = rep.get("duration_s")
        if not isinstance(dur, int | float):
            dur = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        table.add_row(r.id[:8], r.kind, r.status, _ts(r.started_at),
                      f"{dur:.1f}s" if dur is not None else "-", ",".join(r.entities),
                      str(writes) if r.kind != "watermark" else "",
                      str(quar) if r.kind != "watermark" else "",
                      rep.get("error") or rep.get("summary") or "")
    return table


@runs_app.callback(invoke_without_command=True)
@handle_errors
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    as_json: Json = False,
) -> None:
    """The latest runs, newest first (`ponte runs show RUN_ID` for one; a prefix is enough)."""
    if ctx.invoked_subcommand is not None:
        return
    from etl import ops

    with _state() as (_s, store, _m):
        rows = ops.runs(store, limit)
    if as_json:
        _json([ops.run_dict(r) for r in rows])
    else:
        out.print(_runs_table(rows))


@runs_app.command("show")
@handle_errors
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of it.")],
    as_json: Json = False,
) -> None:
    """One run: kind, status, times, API calls, per-entity counts, quarantined records and
    the error, if any (--json: the stored record as is)."""
    from etl import ops
    from etl.render import print_run

    with _state() as (_s, store, _m):
        row = ops.run(store, run_id)
    if as_json:
        _json(ops.run_dict(row))
        return
    print_run(row, out)


# ------------------------------------------------------------------------------------- quarantine


@quarantine_app.command("list")
@handle_errors
def quarantine_list(
    entity: Annotated[str | None, typer.Argument(help="One entity (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """Quarantined records: why, how many attempts, when they are retried next."""
    from etl import ops

    with _state() as (_s, store, _m):
        rows = ops.quarantine(store, entity)
    if as_json:
        _json([ops.quarantine_dict(r) for r in rows])
        return
    table = Table(title=f"quarantine ({len(rows)})")
    for col in ("id", "entity", "side", "key", "kind", "attempts", "next retry", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.entity, r.system, r.key, r.kind, str(r.attempts),
                      _ts(r.next_retry_at), r.reason)
    out.print(table)


@quarantine_app.command("show")
@handle_errors
def quarantine_show(qid: Annotated[int, typer.Argument(help="Entry id.")],
                    as_json: Json = False) -> None:
    """One entry, with the record as it was read."""
    from etl import ops

    with _state() as (_s, store, _m):
        row = ops.quarantine_entry(store, qid)
    if not as_json:
        out.print(f"entry {row.id}: {row.entity} {row.system} {row.key} — {row.kind}, "
                  f"{row.attempts} attempt(s), next retry {_ts(row.next_retry_at)}\n"
                  f"reason: {row.reason}", highlight=False, markup=False)
    _json(ops.quarantine_dict(row, payload=True))


@quarantine_app.command("retry")
@handle_errors
def quarantine_retry(
    qid: Annotated[int | None, typer.Argument(help="Entry id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every entry.")] = False,
) -> None:
    """Make entries due now: the next `ponte sync` re-reads those records by key and syncs
    them if they are fixed (they leave the quarantine), or keeps them with a new reason."""
    from etl import ops
    from etl.errors import ConfigError

    if (qid is None) == (not all_):
        raise ConfigError("give an entry id or --all (not both)")
    with _state(writes=True) as (_s, store, _m):
        n = ops.quarantine_retry(store, None if all_ else qid, now=_now())
    out.print(f"{n} entr{'y' if n == 1 else 'ies'} due now: the next `ponte sync` re-reads "
              f"{'it' if n == 1 else 'them'}", highlight=False)


@quarantine_app.command("drop")
@handle_errors
def quarantine_drop(qid: Annotated[int, typer.Argument(help="Entry id.")],
                    yes: Yes = False) -> None:
    """Drop an entry: its record is ignored until it changes, then processed again. Asks
    first."""
    from etl import ops

    with _state(writes=True) as (_s, store, _m):
        row = ops.quarantine_entry(store, qid)
        _confirm(f"drop quarantine entry {qid} ({row.entity} {row.system} {row.key}: "
                 f"{row.reason[:80]})?", yes)
        ops.quarantine_drop(store, qid)
    out.print(f"dropped entry {qid}", highlight=False)


# ------------------------------------------------------------------------------------- wiring


def _with_metrics(fn: F) -> F:
    """``ponte sync``: rewrite PONTE_METRICS_FILE after the run, whatever its outcome."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            if not kwargs.get("dry_run"):
                from etl import ops
                from etl.errors import ConfigError
                from etl.settings import Settings

                try:
                    ops.publish_metrics(Settings(), now=_now())
                except ConfigError:
                    pass

    return wrapper  # type: ignore[return-value]


def register(app: typer.Typer) -> None:
    """Add the operator commands to ``app``."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if name == "sync" and info.callback is not None:
            info.callback = _with_metrics(info.callback)
    app.command("run")(handle_errors(run))
    app.command("backfill")(handle_errors(backfill))
    app.command("status")(handle_errors(status))
    app.add_typer(watermark_app, name="watermark")
    app.add_typer(runs_app, name="runs")
    app.add_typer(quarantine_app, name="quarantine")
