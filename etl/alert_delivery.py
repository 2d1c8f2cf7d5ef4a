"""Where alerts go: a chat tool's incoming webhook and/or e-mail (part of :mod:`etl.alerts`).

* webhook (``PONTE_ALERTS__WEBHOOK_URL``): one POST of ``{"text": "..."}``, the JSON Slack,
  Mattermost, Rocket.Chat and Google Chat accept; any 2xx answer is taken;
* e-mail (``PONTE_ALERTS__SMTP_URL``, ``smtp://user:password@host:port``): STARTTLS when the
  server offers it, ``smtps://`` for TLS from the start, a login when the URL has a user; one
  message from ``PONTE_ALERTS__EMAIL_FROM`` to every address of ``PONTE_ALERTS__EMAIL_TO``.

A channel is named by its host only (``webhook (chat.example.com)``): a webhook URL's path and
an SMTP URL's password are secrets, kept out of every log line, error and result.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import SplitResult, unquote, urlsplit

import httpx
from loguru import logger

from etl.settings_serve import AlertSettings
from etl.state import AlertRow

TIMEOUT_S = 10.0

__all__ = ["ChannelResult", "compose", "send", "send_test", "when"]


@dataclass(frozen=True)
class ChannelResult:
    """What one channel did with one message: ``error`` says why it did not take it."""

    channel: str
    ok: bool
    error: str | None = None


def compose(rows: Sequence[AlertRow]) -> tuple[str, str]:
    """The subject and the plain text announcing these starts and clears."""
    started = [r for r in rows if r.active]
    cleared = [r for r in rows if not r.active]
    what = ", ".join(p for p in (
        f"{len(started)} alert{'s' if len(started) != 1 else ''} started" if started else "",
        f"{len(cleared)} cleared" if cleared else "") if p)
    lines = [f"ponte: {what}.", ""]
    for r in started:
        lines += [f"STARTED {r.condition} (since {when(r.since)})", f"  {r.detail}", ""]
    for r in cleared:
        head = f"CLEARED {r.condition} (at {when(r.cleared_at)}; active since {when(r.since)})"
        lines += [head, f"  it was: {r.detail}", ""]
    lines.append("`ponte alerts` lists the conditions in force.")
    return f"[ponte] {what}", "\n".join(lines)


def send(cfg: AlertSettings, subject: str, text: str) -> list[ChannelResult]:
    """Send one message to every configured channel; a channel that fails is logged as a
    warning naming it (never its secrets) and reported, not raised."""
    results: list[ChannelResult] = []
    for channel, deliver in _channels(cfg):
        try:
            deliver(subject, text)
        except (httpx.HTTPError, smtplib.SMTPException, OSError, ValueError) as exc:
            error = _scrub(f"{type(exc).__name__}: {exc}", cfg)
            logger.warning("alert message not sent by {}: {}", channel, error)
            results.append(ChannelResult(channel, False, error))
        else:
            results.append(ChannelResult(channel, True))
    return results


def send_test(cfg: AlertSettings) -> list[ChannelResult]:
    """One test message to every configured channel (``ponte alerts test``)."""
    return send(cfg, "[ponte] test alert",
                "ponte: this is a test message (`ponte alerts test`). Alerts reach this "
                "channel: once when a condition starts, once when it clears.")


def _channels(cfg: AlertSettings) -> list[tuple[str, Callable[[str, str], None]]]:
    out: list[tuple[str, Callable[[str, str], None]]] = []
    if cfg.webhook_url is not None:
        url = cfg.webhook_url.get_secret_value()
        out.append((f"webhook ({_host(url)})",
                    lambda subject, text: _post(url, subject, text)))
    if cfg.smtp_url is not None:
        smtp = cfg.smtp_url.get_secret_value()
        out.append((f"e-mail ({_host(smtp)})",
                    lambda subject, text: _mail(cfg, smtp, subject, text)))
    return out


def _post(url: str, subject: str, text: str) -> None:
    answer = httpx.post(url, json={"text": f"{subject}\n\n{text}"}, timeout=TIMEOUT_S)
    if not answer.is_success:
        raise ValueError(f"the webhook answered HTTP {answer.status_code}")


def _mail(cfg: AlertSettings, url: str, subject: str, text: str) -> None:
    u = urlsplit(url)
    if u.scheme not in ("smtp", "smtps") or not u.hostname:
        raise ValueError("PONTE_ALERTS__SMTP_URL must look like smtp://user:password@host:port "
                         "(or smtps:// for TLS from the start)")
    to = [a.strip() for a in cfg.email_to.split(",") if a.strip()]
    if not to:
        raise ValueError("PONTE_ALERTS__EMAIL_TO is empty: give the addresses to alert, "
                         "comma-separated")
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.email_from or f"ponte@{socket.gethostname()}"
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="ponte")
    msg.set_content(text)
    with _connect(u) as server:
        if u.username:
            server.login(unquote(u.username), unquote(u.password or ""))
        server.send_message(msg)


def _connect(u: SplitResult) -> smtplib.SMTP:
    host = u.hostname or ""
    context = ssl.create_default_context()
    if u.scheme == "smtps":
        return smtplib.SMTP_SSL(host, u.port or 465, timeout=TIMEOUT_S, context=context)
    server = smtplib.SMTP(host, u.port or 25, timeout=TIMEOUT_S)
    try:
        server.ehlo()
        if server.has_extn("starttls"):
            server.starttls(context=context)
            server.ehlo()
    except BaseException:
        server.close()
        raise
    return server


def _host(url: str) -> str:
    """``host`` or ``host:port`` of a URL: what a message may name of it."""
    try:
        u = urlsplit(url)
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "unreadable URL"
    return f"{u.hostname or 'no host'}{port}"


def _scrub(text: str, cfg: AlertSettings) -> str:
    """``text`` without the channels' secrets, should an error ever echo them."""
    secrets: list[str] = []
    for value in (cfg.webhook_url, cfg.smtp_url):
        if value is None:
            continue
        url = value.get_secret_value()
        secrets.append(url)
        try:
            u = urlsplit(url)
            secrets += [u.path, u.query, u.password or "", unquote(u.password or "")]
        except ValueError:
            pass
    for s in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def when(value: datetime | None) -> str:
    """A time as messages show it: minutes, UTC."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "(unknown)"
