"""Progress of a long run on the terminal: live bars (records read per entity and side,
records written, rate, ETA) on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

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
from rich.text import Text

from etl.cli.common import out


class _RateColumn(ProgressColumn):
    """Average records/second since the phase began (pages arrive in bursts, so the
    instantaneous speed would swing wildly)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        speed = task.completed / elapsed if elapsed > 0.5 else None
        return Text(f"{speed:,.0f} rec/s" if speed else "- rec/s", style="progress.data.speed")


class RunProgress:
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
    with RunProgress(live=True, settings=settings, label="sync") as progress:
        yield progress
