"""Stateful property test for a SQLite source: random inserts, updates and deletes,
random backup types on a simulated clock, restores at random past instants whose rows
must equal the model's snapshot and pass PRAGMA integrity_check."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from engine_support import SimClock
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from rustybackup import BackupManager

KINDS = st.sampled_from(["full", "incremental", "differential"])


class SqliteModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rb-sqlite-"))
        self.db = self.tmp / "app.db"
        self.conn = sqlite3.connect(self.db)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        self.conn.commit()
        self.rows: dict[int, bytes] = {}
        self.next_id = 1
        self.clock = SimClock()
        self.manager = BackupManager(self.tmp / "repo", clock=self.clock)
        self.manager.register_database("app", self.db, kind="sqlite", block_size=4096)
        self.snapshots: list[tuple[datetime, dict[int, bytes]]] = []
        self.n = 0

    @rule(values=st.lists(st.binary(max_size=600), min_size=1, max_size=40))
    def insert(self, values: list[bytes]) -> None:
        for v in values:
            self.conn.execute("INSERT INTO t VALUES (?, ?)", (self.next_id, v))
            self.rows[self.next_id] = v
            self.next_id += 1
        self.conn.commit()

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data(), v=st.binary(max_size=600))
    def update(self, data: st.DataObject, v: bytes) -> None:
        key = data.draw(st.sampled_from(sorted(self.rows)))
        self.conn.execute("UPDATE t SET v = ? WHERE id = ?", (v, key))
        self.conn.commit()
        self.rows[key] = v

    @precondition(lambda self: bool(self.rows))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.rows)))
        self.conn.execute("DELETE FROM t WHERE id = ?", (key,))
        self.conn.commit()
        del self.rows[key]

    @rule(kind=KINDS, minutes=st.integers(1, 120))
    def backup(self, kind: str, minutes: int) -> None:
        self.clock.advance(minutes=minutes)
        s = self.manager.backup("app", kind)
        self.snapshots.append((s.finished_at, dict(self.rows)))

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def restore_past_instant(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.snapshots) - 1))
        at, rows = self.snapshots[i]
        nxt = self.snapshots[i + 1][0] if i + 1 < len(self.snapshots) else at + timedelta(hours=1)
        until = at + (nxt - at) * data.draw(st.floats(0, 0.999))
        target = self.tmp / f"r{self.n}"
        self.n += 1
        self.manager.restore("app", target, until=until)
        c = sqlite3.connect(target / "app.db")
        try:
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert dict(c.execute("SELECT id, v FROM t")) == rows
        finally:
            c.close()
        shutil.rmtree(target)

    def teardown(self) -> None:
        self.conn.close()
        self.manager.catalog.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


SqliteModel.TestCase.settings = settings(settings(), max_examples=15, stateful_step_count=25)
test_sqlite_state_machine = SqliteModel.TestCase
