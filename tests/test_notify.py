"""Notifications against a real SMTP server (aiosmtpd) and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from rustybackup.errors import ConfigError
from rustybackup.notify import (
    Event,
    Notification,
    Notifier,
    NotifyTargets,
    SmtpSettings,
    parse_events,
    send_webhook,
)

NOTE = Notification(
    Event.FAILURE,
    "nightly",
    "app",
    "job nightly (app) failed",
    datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc),
    {"status": "failed", "error": "disk full"},
)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[_Mailbox, int]]:
    box = _Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


class _Hook:
    """A webhook endpoint that answers 500 to the first ``fail`` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                if hook.attempts <= hook.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                hook.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    h = _Hook()
    yield h
    h.close()


def test_webhook_body_and_slack_format(hook: _Hook) -> None:
    notifier = Notifier(backoff=0.01)
    targets = NotifyTargets(webhooks=(hook.url,), events=frozenset({Event.FAILURE}))
    assert notifier.notify(targets, NOTE) == 1
    slack = NotifyTargets(webhooks=(hook.url,), webhook_format="slack")
    assert notifier.notify(slack, NOTE) == 1
    assert notifier.flush(30)
    assert notifier.sent == 2 and notifier.failed == 0
    plain = next(b for b in hook.bodies if "event" in b)
    assert plain == {
        "event": "failure",
        "job": "nightly",
        "database": "app",
        "summary": "job nightly (app) failed",
        "at": "2026-11-30T02:00:00+00:00",
        "details": {"status": "failed", "error": "disk full"},
    }
    text = next(b for b in hook.bodies if "text" in b)["text"]
    assert set(text.splitlines()) >= {
        "job nightly (app) failed",
        "error: disk full",
        "job: nightly",
    }


def test_event_filter_sends_nothing_unwanted(hook: _Hook) -> None:
    notifier = Notifier()
    targets = NotifyTargets(webhooks=(hook.url,), events=frozenset({Event.SUCCESS}))
    assert notifier.notify(targets, NOTE) == 0
    assert notifier.flush(5) and hook.attempts == 0


def test_webhook_retried_after_server_errors() -> None:
    h = _Hook(fail=2)
    try:
        notifier = Notifier(attempts=3, backoff=0.01)
        notifier.notify(NotifyTargets(webhooks=(h.url,)), NOTE)
        assert notifier.flush(30)
        assert h.attempts == 3 and len(h.bodies) == 1
        assert (notifier.sent, notifier.failed) == (1, 0)
    finally:
        h.close()


def test_webhook_gives_up_after_bounded_attempts() -> None:
    h = _Hook(fail=100)
    try:
        notifier = Notifier(attempts=3, backoff=0.01)
        notifier.notify(NotifyTargets(webhooks=(h.url,)), NOTE)
        assert notifier.flush(30)
        assert h.attempts == 3 and (notifier.sent, notifier.failed) == (0, 1)
    finally:
        h.close()


def test_send_webhook_raises_oserror_on_a_dead_endpoint() -> None:
    with pytest.raises(OSError):
        send_webhook(f"http://127.0.0.1:{_free_port()}/", NOTE, timeout=5)


def test_email_content(smtp: tuple[_Mailbox, int]) -> None:
    box, port = smtp
    settings = SmtpSettings.from_env(
        {
            "RUSTYBACKUP_SMTP_HOST": "127.0.0.1",
            "RUSTYBACKUP_SMTP_PORT": str(port),
            "RUSTYBACKUP_SMTP_FROM": "backup@example.org",
        }
    )
    assert settings is not None and settings.tls == "none"
    notifier = Notifier(settings, backoff=0.01)
    notifier.notify(NotifyTargets(emails=("ops@example.org", "dba@example.org")), NOTE)
    assert notifier.flush(30)
    assert notifier.sent == 2
    assert sorted(m[1][0] for m in box.messages) == [
        "dba@example.org",
        "ops@example.org",
    ]
    mail_from, _, raw = box.messages[0]
    assert mail_from == "backup@example.org"
    msg = message_from_bytes(raw)
    assert msg["Subject"] == "[rustybackup] job nightly (app) failed"
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "error: disk full" in body.decode() and "database: app" in body.decode()


def test_email_without_smtp_host_is_counted_not_raised() -> None:
    notifier = Notifier(None)
    assert notifier.notify(NotifyTargets(emails=("ops@example.org",)), NOTE) == 0
    assert notifier.failed == 1


def test_smtp_settings_from_env() -> None:
    assert SmtpSettings.from_env({}) is None
    s = SmtpSettings.from_env(
        {
            "RUSTYBACKUP_SMTP_HOST": "mx",
            "RUSTYBACKUP_SMTP_USER": "u",
            "RUSTYBACKUP_SMTP_PASSWORD": "p",
        }
    )
    assert s is not None and (s.tls, s.port, s.user, s.password, s.sender) == (
        "starttls",
        587,
        "u",
        "p",
        "rustybackup@mx",
    )
    s = SmtpSettings.from_env(
        {"RUSTYBACKUP_SMTP_HOST": "mx", "RUSTYBACKUP_SMTP_TLS": "ssl"}
    )
    assert s is not None and s.port == 465
    with pytest.raises(ConfigError, match="RUSTYBACKUP_SMTP_TLS"):
        SmtpSettings.from_env(
            {"RUSTYBACKUP_SMTP_HOST": "mx", "RUSTYBACKUP_SMTP_TLS": "yes"}
        )
    with pytest.raises(ConfigError, match="RUSTYBACKUP_SMTP_PORT.*'x'"):
        SmtpSettings.from_env(
            {"RUSTYBACKUP_SMTP_HOST": "mx", "RUSTYBACKUP_SMTP_PORT": "x"}
        )


def test_parse_events_and_targets_validate() -> None:
    assert parse_events("failure, SUCCESS") == {Event.FAILURE, Event.SUCCESS}
    with pytest.raises(ConfigError, match="'sometimes'"):
        parse_events("failure,sometimes")
    with pytest.raises(ConfigError, match="ftp://x"):
        NotifyTargets(webhooks=("ftp://x",))
    with pytest.raises(ConfigError, match="not-an-address"):
        NotifyTargets(emails=("not-an-address",))
    with pytest.raises(ConfigError, match="teams"):
        NotifyTargets(webhooks=("http://x",), webhook_format="teams")


def test_full_queue_drops_and_counts() -> None:
    notifier = Notifier(queue_size=1)
    # No sender thread runs yet: fill the one slot, so the next message cannot wait.
    notifier._queue.put_nowait(None)
    assert notifier.notify(NotifyTargets(webhooks=("http://127.0.0.1:9/",)), NOTE) == 0
    assert notifier.dropped == 1
