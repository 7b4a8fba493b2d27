"""Notifications against a real SMTP server (aiosmtpd) and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from rustybackup.config import load_config
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType, ExecutionStatus, SetStatus
from rustybackup.errors import ConfigError
from rustybackup.jobs import ScheduledBackup
from rustybackup.notify import (
    Event,
    Notification,
    Notifier,
    NotifyTargets,
    SmtpSettings,
    parse_events,
    send_webhook,
)
from rustybackup.scheduler import BackupScheduler
from sched_fakes import FakeClock, FakeManager

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)

NOTE = Notification(
    Event.FAILURE,
    "nightly",
    "app",
    "job nightly (app) failed",
    datetime(2026, 11, 30, 2, 0, tzinfo=UTC),
    {"status": "failed", "error": "disk full"},
)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
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

    def __init__(self, fail: int = 0, code: int = 500) -> None:
        self.fail, self.code = fail, code
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                if hook.attempts <= hook.fail:
                    self.send_response(hook.code)
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


def test_a_client_error_is_not_retried() -> None:
    h = _Hook(fail=100, code=404)
    try:
        notifier = Notifier(attempts=4, backoff=0.01)
        notifier.notify(NotifyTargets(webhooks=(h.url,)), NOTE)
        assert notifier.flush(30)
        assert h.attempts == 1 and notifier.failed == 1
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
    s = SmtpSettings.from_env({"RUSTYBACKUP_SMTP_HOST": "mx", "RUSTYBACKUP_SMTP_TLS": "ssl"})
    assert s is not None and s.port == 465
    with pytest.raises(ConfigError, match="RUSTYBACKUP_SMTP_TLS"):
        SmtpSettings.from_env({"RUSTYBACKUP_SMTP_HOST": "mx", "RUSTYBACKUP_SMTP_TLS": "yes"})
    with pytest.raises(ConfigError, match="RUSTYBACKUP_SMTP_PORT.*'x'"):
        SmtpSettings.from_env({"RUSTYBACKUP_SMTP_HOST": "mx", "RUSTYBACKUP_SMTP_PORT": "x"})


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


# --- around scheduled runs ---------------------------------------------------------------


def _scheduler(tmp_path: Path, notifier: Notifier) -> tuple[BackupScheduler, FakeManager, FakeClock]:
    clock = FakeClock(T0)
    manager = FakeManager(tmp_path, clock=clock)
    return BackupScheduler(manager, clock=clock, notifier=notifier), manager, clock


def _job(targets: NotifyTargets, **kw: Any) -> ScheduledBackup:
    return ScheduledBackup("nightly", "Nightly", "app", BackupType.FULL, "0 1 * * *", notify=targets, **kw)


def test_a_failed_backup_is_posted_and_success_only_when_asked(tmp_path: Path, hook: _Hook) -> None:
    notifier = Notifier(backoff=0.01)
    s, m, clock = _scheduler(tmp_path, notifier)
    s.add_job(_job(NotifyTargets(webhooks=(hook.url,))))
    m.fail["app"] = OSError("disk full")
    clock.set(T0 + timedelta(hours=1))
    s.execute_due_jobs()
    del m.fail["app"]
    clock.set(T0 + timedelta(days=1, hours=1))
    s.execute_due_jobs()  # succeeds: the default events leave success out
    s.close()
    (body,) = hook.bodies
    assert body["event"] == "failure" and body["job"] == "nightly" and body["database"] == "app"
    assert body["details"]["error"] == "OSError: disk full" and body["details"]["status"] == "failed"
    assert body["summary"] == "job nightly (app) failed: OSError: disk full"


def test_success_and_skips_when_asked(tmp_path: Path, hook: _Hook) -> None:
    notifier = Notifier(backoff=0.01)
    s, _m, clock = _scheduler(tmp_path, notifier)
    s.add_job(
        _job(
            NotifyTargets(webhooks=(hook.url,), events=parse_events("success,skipped")),
            misfire="skip",
        )
    )
    clock.set(T0 + timedelta(hours=1))
    (set_id,) = s.execute_due_jobs()
    clock.set(T0 + timedelta(days=3, hours=5))  # three occurrences missed while "down"
    s.execute_due_jobs()
    assert notifier.flush(30)
    events = [(b["event"], b["details"].get("set_id"), b["details"].get("reason")) for b in hook.bodies]
    assert events[0] == ("success", set_id, None)
    assert [e[0] for e in events[1:]] == ["skipped"] * 3
    assert len(s.history(job_id="nightly", status="skipped")) == 3
    s.close()
    assert all("misfire policy skip" in str(e[2]) for e in events[1:])


def test_a_dead_endpoint_never_fails_the_backup(tmp_path: Path) -> None:
    notifier = Notifier(attempts=2, backoff=0.01, timeout=5)
    s, _m, clock = _scheduler(tmp_path, notifier)
    dead = f"http://127.0.0.1:{_free_port()}/"
    s.add_job(
        _job(
            NotifyTargets(
                webhooks=(dead,),
                emails=("ops@example.org",),
                events=parse_events("success"),
            )
        )
    )
    clock.set(T0 + timedelta(hours=1))
    assert len(s.execute_due_jobs()) == 1
    (e,) = s.history(job_id="nightly")
    assert e.status is ExecutionStatus.COMPLETED
    s.close()  # flushes: the delivery was tried (twice) and given up
    assert notifier.sent == 0 and notifier.failed == 2  # the webhook, and the email without SMTP


def test_notify_targets_persist(tmp_path: Path) -> None:
    s, _, _ = _scheduler(tmp_path, Notifier())
    targets = NotifyTargets(
        ("https://hooks.example.org/x",),
        ("ops@example.org",),
        parse_events("damage,window"),
        "slack",
    )
    s.add_job(_job(targets))
    assert load_config(s.config_file).jobs["nightly"].notify == targets
    data = json.loads(s.config_file.read_text())
    data["jobs"][0]["notify"]["on"] = ["failure", "never"]
    s.config_file.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="job 'nightly' field 'notify': notify-on: 'never'"):
        load_config(s.config_file)


# --- damage and the recovery window, with a real repository ------------------------------


def _real(tmp_path: Path, notifier: Notifier) -> tuple[BackupScheduler, BackupManager, FakeClock]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a" * 20000)
    clock = FakeClock(T0)
    manager = BackupManager(tmp_path / "repo", clock=clock)
    manager.register_database("app", src, block_size=4096)
    return BackupScheduler(manager, clock=clock, notifier=notifier), manager, clock


def test_verification_damage_is_notified(tmp_path: Path, hook: _Hook) -> None:
    notifier = Notifier(backoff=0.01)
    s, manager, clock = _real(tmp_path, notifier)
    full = manager.backup("app", BackupType.FULL)
    piece = manager.repository / full.pieces[0].path
    data = bytearray(piece.read_bytes())
    data[100] ^= 0xFF
    piece.write_bytes(bytes(data))
    s.add_verification("check", "app", "full", "0 3 * * *", notify=NotifyTargets(webhooks=(hook.url,)))
    # The database's backup job asked for damage on another URL: damage concerns the database.
    other = _Hook()
    s.add_job(_job(NotifyTargets(webhooks=(other.url,), events=parse_events("damage"))))
    clock.set(T0 + timedelta(hours=3))
    s.execute_due_jobs()
    s.close()
    other.close()
    (body,) = hook.bodies
    assert other.bodies == [body]
    assert body["event"] == "damage" and body["job"] == "check"
    assert body["summary"].startswith("job check (app) damage found: verification found 1 corrupt block(s)")


def test_window_stops_being_covered_once(tmp_path: Path, hook: _Hook) -> None:
    notifier = Notifier(backoff=0.01)
    s, manager, clock = _real(tmp_path, notifier)
    targets = NotifyTargets(webhooks=(hook.url,), events=parse_events("window"))
    s.add_job(ScheduledBackup("n", "n", "app", BackupType.FULL, "0 1 * * *", retention="window=2d", notify=targets))
    clock.set(T0 + timedelta(hours=1))
    s.execute_due_jobs()  # the first FULL: recoverable only since 01:00, the 2-day window is not covered
    clock.set(T0 + timedelta(days=1, hours=1))
    s.execute_due_jobs()  # still not covered: no second message
    assert notifier.flush(30)
    assert [b["event"] for b in hook.bodies] == ["window"]
    first = hook.bodies[0]
    assert first["database"] == "app" and first["details"]["window_seconds"] == 2 * 86400
    assert "recoverable only since 2026-01-05T01:00:00" in first["summary"]
    clock.set(T0 + timedelta(days=3, hours=1))
    s.execute_due_jobs()  # covered now: back to quiet, and covered again is no event
    for full in manager.catalog.list_sets("app"):
        manager.catalog.mark_status(full.id, SetStatus.CORRUPT)
    clock.set(T0 + timedelta(days=4, hours=1))
    s.execute_due_jobs()  # the new FULL is fine, but the window's start now has nothing under it
    s.close()
    assert [b["event"] for b in hook.bodies] == ["window", "window"]


def test_email_logs_in_when_a_user_is_set() -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    seen: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    box = _Mailbox()
    port = _free_port()
    # Plain-text AUTH only because this server is on 127.0.0.1 inside the test.
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False)
    controller.start()
    try:
        env = {
            "RUSTYBACKUP_SMTP_HOST": "127.0.0.1",
            "RUSTYBACKUP_SMTP_PORT": str(port),
            "RUSTYBACKUP_SMTP_TLS": "none",
            "RUSTYBACKUP_SMTP_USER": "backup",
            "RUSTYBACKUP_SMTP_PASSWORD": "s3cret",
        }
        good = Notifier(SmtpSettings.from_env(env), backoff=0.01)
        good.notify(NotifyTargets(emails=("ops@example.org",)), NOTE)
        assert good.flush(30) and good.sent == 1
        wrong = SmtpSettings.from_env({**env, "RUSTYBACKUP_SMTP_PASSWORD": "wrong"})
        assert wrong is not None
        # After a refused login aiosmtpd answers smtplib's next mechanism slowly: a short timeout.
        bad = Notifier(dataclasses.replace(wrong, timeout=2), attempts=2, backoff=0.01)
        bad.notify(NotifyTargets(emails=("ops@example.org",)), NOTE)
        assert bad.flush(30) and (bad.sent, bad.failed) == (0, 1)
    finally:
        controller.stop()
    assert len(box.messages) == 1
    assert seen[0] == (b"backup", b"s3cret") and (b"backup", b"wrong") in seen


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the openssl command line)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_email_over_starttls_with_a_verified_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    box = _Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True)
    controller.start()
    try:
        env = {
            "RUSTYBACKUP_SMTP_HOST": "127.0.0.1",
            "RUSTYBACKUP_SMTP_PORT": str(port),
            "RUSTYBACKUP_SMTP_TLS": "starttls",
        }
        # The client verifies the server's certificate: unknown to the default CA store, refused...
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))
        untrusted = Notifier(SmtpSettings.from_env(env), attempts=1)
        untrusted.notify(NotifyTargets(emails=("ops@example.org",)), NOTE)
        assert untrusted.flush(30) and untrusted.failed == 1
        # ...and accepted once the store trusts it.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        good = Notifier(SmtpSettings.from_env(env), backoff=0.01)
        good.notify(NotifyTargets(emails=("ops@example.org",)), NOTE)
        assert good.flush(30) and good.sent == 1
        # Without STARTTLS the server refuses the mail: the failure is counted, not raised.
        plain = Notifier(SmtpSettings.from_env({**env, "RUSTYBACKUP_SMTP_TLS": "none"}), attempts=1)
        plain.notify(NotifyTargets(emails=("ops@example.org",)), NOTE)
        assert plain.flush(30) and plain.failed == 1
    finally:
        controller.stop()
    assert len(box.messages) == 1
