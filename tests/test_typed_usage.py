"""A typed tour of the public API, written the way a user's code would be.

``mypy --strict`` checks this file with the package (scripts/test.sh runs
``mypy python/rustybackup tests``), so a stub or annotation that stops matching what users
write breaks the build, not the users. Every name comes from the top-level package.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rustybackup
from rustybackup import (
    BackupCatalog,
    BackupManager,
    BackupSet,
    BackupType,
    CronError,
    CronSchedule,
    FileScan,
    NoRecoveryPath,
    RetentionDecision,
    RetentionPolicy,
    SetStatus,
    daily,
    hash_file,
    scan_file,
)

UTC = UTC


class Clock:
    """A clock a test (or a user's simulation) can move; BackupManager takes any callable."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 1, 1, 0, tzinfo=UTC))


@pytest.fixture
def app_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")
        conn.executemany("INSERT INTO orders (item) VALUES (?)", [(f"item-{i}",) for i in range(200)])
    yield path


def count_orders(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        row: tuple[int] = conn.execute("SELECT count(*) FROM orders").fetchone()
        return row[0]
    finally:
        conn.close()


def test_cron_schedule_plans_the_nightly_runs_in_berlin() -> None:
    nightly = CronSchedule("30 2 * * mon-fri", "Europe/Berlin")
    runs: list[datetime] = nightly.next_n(datetime(2026, 3, 27, tzinfo=UTC), 3)
    # 2026-03-29 is the spring-forward Sunday; weekdays only, so Fri then Mon, Tue
    assert [r.strftime("%a %H:%M %Z") for r in runs] == ["Fri 02:30 CET", "Mon 02:30 CEST", "Tue 02:30 CEST"]
    assert nightly.describe()
    assert str(daily(2)) == "0 2 * * *"
    with pytest.raises(CronError, match="can never fire"):
        CronSchedule("0 0 30 2 *")


def test_hash_and_scan_a_file(tmp_path: Path) -> None:
    data = tmp_path / "blob.bin"
    data.write_bytes(b"x" * 20_000)
    digest: str = hash_file(data, "sha256")
    assert digest == rustybackup.hash_bytes(b"x" * 20_000, "sha256")
    scan: FileScan = scan_file(data, "blake3", block_size=8192)
    assert (scan.size, scan.block_count, len(scan)) == (20_000, 3, 3)
    assert scan.block_digest(0) != scan.block_digest(2)  # the last block is short


def test_backup_restore_retention_and_catalog_queries(tmp_path: Path, app_db: Path, clock: Clock) -> None:
    manager = BackupManager(tmp_path / "repo", clock=clock)
    manager.register_database("app", app_db, kind="sqlite")

    full: BackupSet = manager.backup("app", BackupType.FULL, tags=["nightly"])
    clock.advance(timedelta(hours=1))
    with sqlite3.connect(app_db) as conn:
        conn.execute("INSERT INTO orders (item) VALUES ('late order')")
    incr = manager.backup("app", BackupType.INCREMENTAL)
    assert incr.parent_id == full.id and incr.status is SetStatus.AVAILABLE

    # the newest state
    used: list[BackupSet] = manager.restore("app", tmp_path / "now")
    assert [s.id for s in used] == [full.id, incr.id]
    assert count_orders(tmp_path / "now" / app_db.name) == 201
    # as it was when the FULL finished
    manager.restore("app", tmp_path / "then", until=full.finished_at)
    assert count_orders(tmp_path / "then" / app_db.name) == 200

    catalog: BackupCatalog = manager.catalog
    fulls = catalog.list_sets("app", BackupType.FULL)
    assert [s.tags for s in fulls] == [("nightly",)]
    assert [s.id for s in catalog.find_recovery_path("app")] == [full.id, incr.id]
    with pytest.raises(NoRecoveryPath):
        catalog.find_recovery_path("app", until=full.started_at - timedelta(days=1))

    policy = RetentionPolicy.redundancy(1) | RetentionPolicy.keep(daily=7)
    plan: list[RetentionDecision] = catalog.retention_plan("app", policy, now=clock())
    assert all(d.keep for d in plan) and all(d.reason for d in plan)
    deleted: list[str] = manager.apply_retention("app", policy, dry_run=True)
    assert deleted == []
