"""Verification reads the catalog in plain read transactions: a FULL verification
paused in the middle of a catalog read never makes a backup beside it wait or fail.

Sequenced with events: the verifier's connection stops inside its read of ``sets``
(SQLite's progress handler) until the backup in the main thread has registered its set.
The backup's connection has no busy timeout, so a write lock held by the verifier
would fail it at once ("database is locked") instead of making it wait.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from engine_support import SimClock
from rustybackup import BackupManager, VerificationType
from rustybackup.verify import Verifier
from rustybackup.verify_report import VerificationReport


def test_a_full_verification_paused_mid_read_never_blocks_a_backup(tmp_path: Path) -> None:
    clock = SimClock()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(bytes([i]) * 50_000)
    setup = BackupManager(tmp_path / "repo", clock=clock)
    setup.register_database("db", src)
    first = setup.backup("db", "full")
    setup.catalog.close()

    verifier = Verifier(BackupManager(tmp_path / "repo", clock=clock))
    conn = verifier.manager.catalog.connection
    assert isinstance(conn, sqlite3.Connection)  # the SQLite catalog: its hooks are SQLite's
    reading_sets = threading.Event()
    paused = threading.Event()
    resume = threading.Event()

    def trace(sql: str) -> None:
        if not paused.is_set() and sql.lstrip().upper().startswith("SELECT") and " sets" in sql:
            reading_sets.set()

    def progress() -> int:
        if reading_sets.is_set() and not paused.is_set():
            paused.set()
            resume.wait(120)
        return 0

    conn.set_trace_callback(trace)
    conn.set_progress_handler(progress, 1)
    reports: list[VerificationReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(verifier.verify("db", VerificationType.FULL))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread's assertions
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert paused.wait(120), "the verifier never read the sets table"
        writer = BackupManager(tmp_path / "repo", clock=clock)
        writer.catalog.connection.execute("PRAGMA busy_timeout = 0")
        (src / "f0").write_bytes(b"changed" * 10_000)
        clock.advance(hours=1)
        second = writer.backup("db", "incremental")
        assert [s.id for s in writer.catalog.list_sets()] == [first.id, second.id]
    finally:
        resume.set()
        thread.join(120)
    conn.set_progress_handler(None, 1)
    conn.set_trace_callback(None)
    assert errors == []
    [report] = reports
    assert report.ok and report.level is VerificationType.FULL
    assert first.id in report.sets
    # Its one write, at the end, went through too.
    assert verifier.records.last_verified([f"{first.id}/blockmap"])
