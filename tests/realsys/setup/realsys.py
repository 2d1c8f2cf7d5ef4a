"""Install, start, stop and reset the two real systems the realsys tests run against.

Tryton 8.2 (ERP, REST API) and BottleCRM (PyPI ``django-crm`` 1.35.0, CRM, REST API), each in
its own virtualenv under a cache folder (``.cache/realsys/`` in the repository, or
``PONTE_TEST_REALSYS_DIR``), each with an SQLite database seeded with a company, served on
127.0.0.1 only. The REST key and the personal access token go to ``realsys.env`` in the cache
folder (mode 600), which the tests read.

    python3 tests/realsys/setup/realsys.py up       # install/seed what is missing, start both
    python3 tests/realsys/setup/realsys.py reset    # back to the pristine databases (seconds)
    python3 tests/realsys/setup/realsys.py reset tryton   # only one of them
    python3 tests/realsys/setup/realsys.py stop     # stop both servers by their PIDs
    python3 tests/realsys/setup/realsys.py status
    python3 tests/realsys/setup/realsys.py clean    # stop and delete the cache folder

Standard library only, so that it runs before ponte's own virtualenv exists. Every step that
is done is remembered (a stamp file, a pristine database, a live PID), so a second ``up`` with
the servers running only checks them. BottleCRM needs Python >= 3.12: one is looked for on the
machine (``PONTE_TEST_REALSYS_PYTHON`` names one explicitly); when none is found, Tryton is set
up anyway and the command says how to get one, and exits 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from realsys_support import (
    Layout,
    SetupError,
    find_bottlecrm_python,
    layout_from_env,
    say,
    write_secret,
)
from realsys_systems import BottleCrm, System, Tryton

# --------------------------------------------------------------------------- commands

def write_env_file(layout: Layout, systems: Sequence[System]) -> None:
    lines = ["# Written by tests/realsys/setup/realsys.py: the servers' addresses and credentials.",
             "# Secrets: keep this file private (mode 600)."]
    for system in systems:
        if system.is_set_up():
            lines += [f"{key}={value}" for key, value in system.credentials().items()]
    write_secret(layout.env_file, "\n".join(lines) + "\n")


def bring_up(system: System) -> str | None:
    """Install, seed and start one system and wait for it; the problem, if any."""
    try:
        system.set_up()
        system.start()
        system.wait_ready()
    except SetupError as exc:
        return str(exc)
    say(f"{system.name}: ready on {system.url()}")
    return None


def cmd_up(layout: Layout) -> int:
    """Both systems side by side (their installs are mostly waiting on the network and disk)."""
    started = time.monotonic()
    layout.root.mkdir(parents=True, exist_ok=True)
    systems = (Tryton(layout), BottleCrm(layout))
    with ThreadPoolExecutor(max_workers=len(systems)) as pool:
        problems = [problem for problem in pool.map(bring_up, systems) if problem]
    write_env_file(layout, systems)
    say(f"credentials in {layout.env_file}; {time.monotonic() - started:.1f} s")
    for problem in problems:
        print(f"realsys: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_stop(layout: Layout, only: Sequence[str] = ()) -> int:
    for system in (Tryton(layout), BottleCrm(layout)):
        if not only or system.name in only:
            say(f"{system.name}: {'stopped' if system.stop() else 'was not running'}")
    return 0


def cmd_reset(layout: Layout, only: Sequence[str] = ()) -> int:
    started = time.monotonic()
    systems = [s for s in (Tryton(layout), BottleCrm(layout))
               if s.is_set_up() and (not only or s.name in only)]
    if not systems:
        raise SetupError(f"nothing is set up in {layout.root}; run `make realsys` first")
    for system in systems:
        system.restore()
    for system in systems:
        system.wait_ready()
    say(f"reset {', '.join(s.name for s in systems)} to their pristine databases in "
        f"{time.monotonic() - started:.1f} s")
    return 0


def cmd_status(layout: Layout) -> int:
    for system in (Tryton(layout), BottleCrm(layout)):
        pid = system.pid()
        state = ("not set up" if not system.is_set_up() else
                 f"running (pid {pid}) on {system.url()}" if pid is not None else "stopped")
        say(f"{system.name}: {state}")
    say(f"cache folder {layout.root}")
    return 0


def cmd_clean(layout: Layout) -> int:
    cmd_stop(layout)
    if layout.root.exists():
        shutil.rmtree(layout.root)
    say(f"removed {layout.root}")
    return 0


def cmd_python(layout: Layout) -> int:
    say(f"Python for BottleCRM: {find_bottlecrm_python(layout, os.environ)}")
    return 0


COMMANDS = {"up": cmd_up, "stop": cmd_stop, "reset": cmd_reset, "status": cmd_status,
            "clean": cmd_clean, "python": cmd_python}
SYSTEM_NAMES = ("tryton", "bottlecrm")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS), nargs="?", default="up")
    parser.add_argument("systems", nargs="*", metavar="SYSTEM",
                        help=f"reset or stop only these ({', '.join(SYSTEM_NAMES)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.systems) - set(SYSTEM_NAMES))
    if unknown:
        parser.error(f"unknown system {', '.join(unknown)}; valid: {', '.join(SYSTEM_NAMES)}")
    try:
        layout = layout_from_env(os.environ)
        if args.command in ("reset", "stop"):
            return COMMANDS[args.command](layout, args.systems)  # type: ignore[call-arg]
        if args.systems:
            parser.error(f"{args.command} takes no system names")
        return COMMANDS[args.command](layout)
    except SetupError as exc:
        print(f"realsys: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
