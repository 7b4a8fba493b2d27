"""Notifications: email and webhooks about runs, damage and the recovery window.

A job says where to send (``NotifyTargets``: webhook URLs, email addresses) and on which
events (``Event``). The scheduler hands each message to a :class:`Notifier`, whose one
background thread delivers it, so a slow or dead endpoint never holds up a backup: the
queue is bounded (a full queue drops the message, logged and counted), each delivery is
retried a bounded number of times with exponential backoff, and every failure ends as a
log line and a counter, never as an exception in the job. ``flush`` waits for the queue
to drain (``run --once`` calls it before it exits).

SMTP settings come from the environment (``SmtpSettings.from_env``):
``RUSTYBACKUP_SMTP_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD``, ``_FROM`` and ``_TLS``
(``starttls``, ``ssl`` or ``none``; default ``starttls`` when a user is set, else ``none``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

from .errors import ConfigError

__all__ = [
    "Event",
    "Notification",
    "Notifier",
    "NotifyTargets",
    "SmtpSettings",
    "parse_events",
    "send_email",
    "send_webhook",
]

log = logging.getLogger(__name__)

WEBHOOK_FORMATS = ("json", "slack")


class Event(StrEnum):
    """What a notification is about (the values are ``--notify-on`` words)."""

    FAILURE = "failure"
    SUCCESS = "success"
    SKIPPED = "skipped"
    DAMAGE = "damage"
    WINDOW = "window"


#: Without ``--notify-on``: what needs a human; success only when asked.
DEFAULT_EVENTS = frozenset({Event.FAILURE, Event.SKIPPED, Event.DAMAGE, Event.WINDOW})


def parse_events(text: str) -> frozenset[Event]:
    """``"failure,success"`` -> the events; an unknown word is a ConfigError naming it."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not words:
        raise ConfigError(f"notify-on: expected some of {', '.join(e.value for e in Event)}, got {text!r}")
    out = set()
    for w in words:
        try:
            out.add(Event(w))
        except ValueError:
            raise ConfigError(f"notify-on: {w!r} is not one of {', '.join(e.value for e in Event)}") from None
    return frozenset(out)


@dataclass(frozen=True)
class NotifyTargets:
    """Where a job's notifications go and which events it wants."""

    webhooks: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    events: frozenset[Event] = DEFAULT_EVENTS
    webhook_format: str = "json"

    def __post_init__(self) -> None:
        for url in self.webhooks:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(f"notify webhook {url!r}: expected an http:// or https:// URL")
        for addr in self.emails:
            if not isinstance(addr, str) or "@" not in addr or any(c in addr for c in "\r\n ,"):
                raise ConfigError(f"notify email {addr!r}: expected one address like ops@example.com")
        if self.webhook_format not in WEBHOOK_FORMATS:
            raise ConfigError(f"notify webhook format {self.webhook_format!r}: use one of {', '.join(WEBHOOK_FORMATS)}")
        object.__setattr__(self, "webhooks", tuple(self.webhooks))
        object.__setattr__(self, "emails", tuple(self.emails))
        object.__setattr__(self, "events", frozenset(Event(e) for e in self.events))

    def to_json(self) -> dict[str, Any]:
        return {
            "webhooks": list(self.webhooks),
            "emails": list(self.emails),
            "on": sorted(e.value for e in self.events),
            "webhook_format": self.webhook_format,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> NotifyTargets:
        """Reads ``to_json``'s form; a ConfigError names ``where`` and the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} field 'notify': expected an object, got {data!r:.60}")
        unknown = sorted(set(data) - {"webhooks", "emails", "on", "webhook_format"})
        if unknown:
            raise ConfigError(f"{where} field 'notify.{unknown[0]}': unknown field")
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("webhooks", "emails", "on"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where} field 'notify.{key}': expected a list of strings, got {value!r:.60}")
            lists[key] = tuple(value)
        fmt = data.get("webhook_format", "json")
        try:
            events = parse_events(",".join(lists["on"])) if lists["on"] else DEFAULT_EVENTS
            return cls(lists["webhooks"], lists["emails"], events, fmt)
        except ConfigError as exc:
            raise ConfigError(f"{where} field 'notify': {exc}") from None

    @property
    def empty(self) -> bool:
        return not self.webhooks and not self.emails

    def wants(self, event: Event) -> bool:
        return not self.empty and event in self.events


@dataclass(frozen=True)
class Notification:
    """One message: ``summary`` is the one-line subject, ``details`` the facts as JSON."""

    event: Event
    job_id: str | None
    database: str
    summary: str
    at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "job": self.job_id,
            "database": self.database,
            "summary": self.summary,
            "at": self.at.isoformat(),
            "details": dict(self.details),
        }

    def text(self) -> str:
        lines = [
            self.summary,
            "",
            f"event: {self.event.value}",
            f"database: {self.database}",
        ]
        if self.job_id is not None:
            lines.append(f"job: {self.job_id}")
        lines.append(f"at: {self.at.isoformat()}")
        lines.extend(f"{k}: {v}" for k, v in self.details.items() if v is not None)
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the mail server (from ``RUSTYBACKUP_SMTP_*``)."""

    host: str
    port: int
    sender: str
    tls: str = "none"  # none | starttls | ssl
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """The settings, or None when ``RUSTYBACKUP_SMTP_HOST`` is unset."""
        env = os.environ if env is None else env
        host = env.get("RUSTYBACKUP_SMTP_HOST", "").strip()
        if not host:
            return None
        user = env.get("RUSTYBACKUP_SMTP_USER") or None
        tls = (env.get("RUSTYBACKUP_SMTP_TLS") or ("starttls" if user else "none")).strip().lower()
        if tls not in ("none", "starttls", "ssl"):
            raise ConfigError(f"RUSTYBACKUP_SMTP_TLS: {tls!r} is not one of none, starttls, ssl")
        raw_port = env.get("RUSTYBACKUP_SMTP_PORT") or {
            "ssl": "465",
            "starttls": "587",
        }.get(tls, "25")
        try:
            port = int(raw_port)
        except ValueError:
            raise ConfigError(f"RUSTYBACKUP_SMTP_PORT: {raw_port!r} is not a port number") from None
        if not 0 < port < 65536:
            raise ConfigError(f"RUSTYBACKUP_SMTP_PORT: {port} is out of range 1-65535")
        sender = env.get("RUSTYBACKUP_SMTP_FROM") or f"rustybackup@{host}"
        return cls(host, port, sender, tls, user, env.get("RUSTYBACKUP_SMTP_PASSWORD") or None)


def send_email(settings: SmtpSettings, to: str, note: Notification) -> None:
    """One message to ``to``; raises OSError/smtplib.SMTPException on failure."""
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = to
    msg["Subject"] = f"[rustybackup] {note.summary}"
    msg.set_content(note.text())
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.tls == "ssl":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        if settings.tls == "starttls":
            smtp.starttls(context=context)
        if settings.user is not None:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(msg)


def webhook_body(note: Notification, fmt: str) -> dict[str, Any]:
    """The JSON document POSTed: the notification, or Slack's ``{"text": ...}``."""
    if fmt == "slack":
        return {"text": note.text().rstrip("\n")}
    return note.to_json()


def send_webhook(url: str, note: Notification, fmt: str = "json", timeout: float = 30.0) -> None:
    """POSTs the notification as JSON; raises OSError (urllib's errors) on failure,
    including any answer outside 2xx."""
    data = json.dumps(webhook_body(note, fmt)).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "rustybackup"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()


def _permanent(exc: Exception) -> bool:
    """An answer that a retry will not change: a 4xx other than timeout and rate limit
    (a wrong URL or a rejected body), or a mail server refusing the login."""
    if isinstance(exc, urllib.error.HTTPError):
        return 400 <= exc.code < 500 and exc.code not in (408, 429)
    return isinstance(exc, smtplib.SMTPAuthenticationError)


@dataclass
class _Delivery:
    what: str  # "webhook URL" / "email ADDR", for logs
    send: Callable[[], None]
    attempt: int = 0


class Notifier:
    """Delivers notifications on one background thread; never raises into the caller.

    ``attempts`` deliveries per target at most, waiting ``backoff * 2**n`` seconds
    between them (capped at ``max_backoff``). Counters ``sent``, ``failed`` and
    ``dropped`` say what happened; ``flush`` waits until the queue is empty.
    """

    def __init__(
        self,
        smtp: SmtpSettings | None = None,
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        queue_size: int = 1000,
        timeout: float = 30.0,
    ) -> None:
        if attempts < 1:
            raise ConfigError(f"notifier attempts: must be at least 1, got {attempts}")
        self.smtp = smtp
        self.attempts, self.backoff, self.max_backoff, self.timeout = (
            attempts,
            backoff,
            max_backoff,
            timeout,
        )
        self.sent = self.failed = self.dropped = 0
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def notify(self, targets: NotifyTargets, note: Notification) -> int:
        """Queues ``note`` for each of ``targets`` that wants its event; returns how many
        deliveries were queued (never blocks, never raises)."""
        if not targets.wants(note.event):
            return 0
        queued = 0
        for d in self._deliveries(targets, note):
            try:
                self._queue.put_nowait(d)
            except queue.Full:
                self._count("dropped")
                log.warning(
                    "notification queue full: dropped %s for %s",
                    note.event.value,
                    d.what,
                )
                continue
            queued += 1
        if queued:
            self._ensure_thread()
        return queued

    def _deliveries(self, targets: NotifyTargets, note: Notification) -> Iterable[_Delivery]:
        fmt, timeout, smtp = targets.webhook_format, self.timeout, self.smtp
        for url in targets.webhooks:
            yield _Delivery(
                f"webhook {url}",
                functools.partial(send_webhook, url, note, fmt, timeout),
            )
        for addr in targets.emails:
            if smtp is None:
                self._count("failed")
                log.warning(
                    "notification to %s not sent: RUSTYBACKUP_SMTP_HOST is not set",
                    addr,
                )
                continue
            yield _Delivery(f"email {addr}", functools.partial(send_email, smtp, addr, note))

    def _count(self, name: str) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + 1)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="rustybackup-notify", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            d = self._queue.get()
            try:
                if d is None:
                    return
                self._deliver(d)
            finally:
                self._queue.task_done()

    def _deliver(self, d: _Delivery) -> None:
        while True:
            d.attempt += 1
            try:
                d.send()
            except Exception as exc:  # noqa: BLE001 - a delivery's failure is logged and counted, never raised
                if d.attempt >= self.attempts or self._stop.is_set() or _permanent(exc):
                    self._count("failed")
                    log.warning(
                        "notification by %s failed after %d attempt(s): %s",
                        d.what,
                        d.attempt,
                        exc,
                    )
                    return
                delay = min(self.backoff * 2 ** (d.attempt - 1), self.max_backoff)
                log.info(
                    "notification by %s failed (attempt %d): %s; retrying in %.1fs",
                    d.what,
                    d.attempt,
                    exc,
                    delay,
                )
                self._stop.wait(delay)
            else:
                self._count("sent")
                return

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued delivery finished (or ``timeout`` seconds passed);
        True when the queue is empty."""
        done = threading.Event()

        def join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flushes, then stops the thread; retries still waiting give up after one more try."""
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout)
