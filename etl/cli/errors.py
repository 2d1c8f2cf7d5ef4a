"""Every way a command can fail, in one place: a clear line on stderr, with ``--json`` exactly
one JSON object on stdout, and the documented exit code (:mod:`etl.exitcodes`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer

from etl.cli.common import err
from etl.errors import ConfigError, EtlError
from etl.exitcodes import Exit, for_error

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Every way a command can fail -> one clear line on stderr (and, with ``--json``, exactly
    one JSON object on stdout: ``{"status", "error", "exit_code"}``) and the documented exit
    code. Library errors map through :func:`etl.exitcodes.for_error`; a stop (Ctrl-C, SIGTERM)
    exits 3; anything else is a bug: exit 5, the traceback at DEBUG."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except EtlError as exc:
            from etl.engine.entity import Stopped

            status = "stopped" if isinstance(exc, Stopped) else "failed"
            label = "bad configuration" if isinstance(exc, ConfigError) else \
                "stopped" if status == "stopped" else "error"
            fail(label, str(exc), for_error(exc), as_json, status=status)
        except KeyboardInterrupt as exc:  # Aborted: a second Ctrl-C/SIGTERM; or one unhandled
            fail("aborted", str(exc) or "interrupted", Exit.FAILED, as_json, status="aborted")
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException,
                click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - not ponte's own: a bug, reported as one
            import traceback

            from loguru import logger

            logger.debug("internal error, traceback:\n{}",
                         "".join(traceback.format_exception(exc)).rstrip())
            one_line = " ".join(str(exc).split())
            fail("internal error", f"{type(exc).__name__}: {one_line} — this is a bug in ponte, "
                 "please report it (PONTE_LOG_LEVEL=DEBUG shows the traceback)",
                 Exit.INTERNAL, as_json)

    return wrapper  # type: ignore[return-value]


def fail(label: str, text: str, code: Exit, as_json: bool, *, status: str = "failed") -> None:
    """Print the one-line message (secrets masked) and exit with ``code``."""
    from etl.logging import Redactor, redact

    text = redact(text)
    try:
        from etl.cli.common import current_settings

        text = Redactor(current_settings().secrets())(text)
    except ConfigError:
        pass
    err.print(f"{label}:{'' if text.startswith(chr(10)) else ' '}{text}", highlight=False,
              markup=False)
    if as_json:
        typer.echo(json.dumps({"status": status, "error": text.strip(), "exit_code": int(code)},
                              ensure_ascii=False))
    raise typer.Exit(code)
