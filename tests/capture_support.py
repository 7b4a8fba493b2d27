"""What the SQLite capture tests share (test_capture_pitr.py, test_capture_spool.py): a
strictly increasing clock, a registered database on it, a writer thread that logs when
each row's commit began and returned, and the check of a restore against that log."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rustybackup.engine import BackupManager


class Clock:
    """A strictly increasing clock shared by the writer and the manager, so that "before"
    and "after" between their events are exact."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.now(UTC)

    def __call__(self) -> datetime:
        with self._lock:
            now = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
            self._last = now
            return now


def shop(tmp: Path, make_db: Callable[[Path], None]) -> tuple[Path, Clock, BackupManager]:
    """``tmp/shop.db`` made by `make_db`, a `Clock`, and a repository ``tmp/repo`` on
    that clock with the database registered as ``shop`` (SQLite, 4 KiB blocks)."""
    db = tmp / "shop.db"
    make_db(db)
    clock = Clock()
    manager = BackupManager(tmp / "repo", clock=clock)
    manager.register_database("shop", db, kind="sqlite", block_size=4096)
    return db, clock, manager


class LoggedWriter(threading.Thread):
    """Commits transactions of consecutive ids (1, 2, ...) until `stop` is set; `log`
    keeps (id, time before COMMIT, time after it returned). What a transaction holds
    is the subclass's: `count` rows, each written by `insert`; `prepare` sets the
    connection up. An exception ends the thread and is kept in `error` for the test."""

    pause = 0.002

    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.clock = clock
        self.stop = threading.Event()
        self.log: list[tuple[int, datetime, datetime]] = []
        self.error: BaseException | None = None

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Settings of the writer's connection (none by default)."""

    def count(self) -> int:
        raise NotImplementedError

    def insert(self, conn: sqlite3.Connection, row_id: int, before: datetime) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.prepare(conn)
            next_id = 1
            while not self.stop.is_set():
                ids = list(range(next_id, next_id + self.count()))
                conn.execute("BEGIN IMMEDIATE")
                before = self.clock()
                for i in ids:
                    self.insert(conn, i, before)
                conn.execute("COMMIT")
                after = self.clock()
                self.log.extend((i, before, after) for i in ids)
                next_id = ids[-1] + 1
                time.sleep(self.pause)
            conn.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def restored_ids(db: Path) -> list[int]:
    """The writer's ids in a restored database (its own rows have ids above 0), after
    SQLite's integrity check passed."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in conn.execute("SELECT id FROM t WHERE id > 0 ORDER BY id")]
    finally:
        conn.close()


def assert_restored_prefix(
    ids: list[int], log: list[tuple[int, datetime, datetime]], until: datetime, floor: datetime
) -> None:
    """A restore to `until` holds a prefix of the commits (one writer: ids in commit
    order), no row whose commit began after `until`, and every row whose commit had
    returned by `floor` (the newest point the restore must reach)."""
    assert ids == list(range(1, len(ids) + 1)), "not a prefix of the commits"
    began = {i: before for i, before, _ in log}
    assert all(began[i] <= until for i in ids), "a row committed after T was restored"
    must = {i for i, _, after in log if after <= floor}
    assert must <= set(ids), f"rows committed before {floor} are missing"
