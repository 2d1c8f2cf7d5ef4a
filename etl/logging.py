"""Loguru sinks for entry points: text for a terminal, JSON lines for journald; secrets redacted.

Library code only does ``from loguru import logger`` and binds context; only entry points call
:func:`configure`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

REDACTED = "***"


class Redactor:
    """Replaces every known secret value in a string."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


_active = Redactor(())


def redact(text: str) -> str:
    """``text`` with the secrets of the last :func:`configure` masked (for error texts that
    are stored, e.g. a crashed run's error in its run record)."""
    return _active(text)


def configure(
    *, secrets: Iterable[str] = (), fmt: str = "text", level: str = "INFO", sink: TextIO | None = None
) -> Redactor:
    """Install one sink on stderr (or ``sink``), redacting ``secrets``; :func:`redact` uses
    the same secrets afterwards."""
    global _active
    redact = _active = Redactor(secrets)
    out = sink if sink is not None else sys.stderr
    logger.remove()

    if fmt == "json":

        def write_json(message: Message) -> None:
            record = message.record
            payload = {
                "time": record["time"].isoformat(),
                "level": record["level"].name,
                "message": redact(record["message"]),
                **{k: redact(str(v)) for k, v in record["extra"].items()},
            }
            if record["exception"] is not None:
                payload["exception"] = redact(str(record["exception"].value))
            out.write(json.dumps(payload, ensure_ascii=False) + "\n")
            out.flush()

        logger.add(write_json, level=level, format="{message}", colorize=False)
    else:

        def patch(record: Record) -> None:
            record["message"] = redact(record["message"])
            ctx = " ".join(f"{k}={v}" for k, v in record["extra"].items())
            record["extra"]["_ctx"] = redact(f" [{ctx}]") if ctx else ""

        logger.configure(patcher=patch)
        logger.add(
            out,
            level=level,
            format="{time:YYYY-MM-DD HH:mm:ss} {level: <7} {message}{extra[_ctx]}",
            colorize=False,
            backtrace=False,
            diagnose=False,
        )
    return redact
