"""Run history and occurrence claims, in the repository's catalog database.

One row per ``(job_id, scheduled_for)``, made UNIQUE, so claiming an occurrence is an
``INSERT`` inside a ``BEGIN IMMEDIATE`` transaction: of two scheduler processes on one
repository exactly one gets the row, the other sees it taken. A RUNNING row carries its
owner (host, pid, token) and a lease that the runner renews; a row whose owner is gone
(dead pid on this host, or an expired lease) is marked FAILED "interrupted", so a crash
never blocks the next occurrence. The tables carry a ``sched_`` prefix and are created
with IF NOT EXISTS, so they live beside the catalog module's tables in ``catalog.db``.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .enums import ExecutionStatus
from .jobs import BackupExecution

__all__ = ["History", "Claim", "new_owner"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sched_executions (
    id             TEXT PRIMARY KEY,
    job_id         TEXT NOT NULL,
    scheduled_for  INTEGER NOT NULL,  -- microseconds since the epoch, UTC
    started_at     INTEGER,
    finished_at    INTEGER,
    status         TEXT NOT NULL,
    backup_set_id  TEXT,
    error          TEXT,
    bytes_read     INTEGER,
    bytes_written  INTEGER,
    owner          TEXT,
    lease_until    INTEGER,
    UNIQUE (job_id, scheduled_for)
);
CREATE INDEX IF NOT EXISTS sched_executions_status ON sched_executions (status, job_id);
CREATE INDEX IF NOT EXISTS sched_executions_time ON sched_executions (scheduled_for);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def new_owner() -> str:
    """This process's identity on claims: host, pid and a random token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner: str | None) -> bool:
    """False only when the owner is provably gone: a dead process on this host."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another host: only its lease can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming an occurrence: ``claimed`` (run it, as ``execution_id``),
    ``taken`` (another process has it) or ``busy`` (recorded SKIPPED: previous run going)."""

    outcome: str
    execution_id: str | None = None
    reason: str | None = None


class History:
    """The ``sched_executions`` table; every method is one short transaction."""

    def __init__(self, db_path: Path, owner: str | None = None) -> None:
        self.path = db_path
        self.owner = owner or new_owner()
        self._lock = threading.Lock()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        # WAL + NORMAL: a commit survives a process crash (what claims guard against);
        # only a power cut can lose the newest rows, as with the catalog itself.
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- claims -------------------------------------------------------------------------

    def claim(self, job_id: str, scheduled_for: datetime, now: datetime, lease: timedelta) -> Claim:
        sched = _us(scheduled_for)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute(
                    "SELECT 1 FROM sched_executions WHERE job_id = ? AND scheduled_for = ?", (job_id, sched)
                ).fetchone():
                    db.execute("COMMIT")
                    return Claim("taken")
                for exec_id, prev_sched, owner, lease_until in db.execute(
                    "SELECT id, scheduled_for, owner, lease_until FROM sched_executions"
                    " WHERE job_id = ? AND status = ?",
                    (job_id, ExecutionStatus.RUNNING.value),
                ).fetchall():
                    if self._stale(owner, lease_until, now):
                        self._interrupt(exec_id, owner, now)
                        continue
                    prev = _dt(prev_sched)
                    assert prev is not None
                    reason = f"previous run (scheduled for {prev.isoformat()}) is still running"
                    self._insert(job_id, sched, now, ExecutionStatus.SKIPPED, error=reason)
                    db.execute("COMMIT")
                    return Claim("busy", reason=reason)
                exec_id = self._insert(
                    job_id, sched, now, ExecutionStatus.RUNNING, owner=self.owner, lease_until=_us(now + lease)
                )
                db.execute("COMMIT")
                return Claim("claimed", execution_id=exec_id)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def renew(self, execution_id: str, until: datetime) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE sched_executions SET lease_until = ? WHERE id = ? AND status = ?",
                (_us(until), execution_id, ExecutionStatus.RUNNING.value),
            )

    def finish(
        self,
        execution_id: str,
        status: ExecutionStatus,
        finished_at: datetime,
        *,
        backup_set_id: str | None = None,
        error: str | None = None,
        bytes_read: int | None = None,
        bytes_written: int | None = None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE sched_executions SET status = ?, finished_at = ?, backup_set_id = ?, error = ?,"
                " bytes_read = ?, bytes_written = ?, lease_until = NULL WHERE id = ?",
                (status.value, _us(finished_at), backup_set_id, error, bytes_read, bytes_written, execution_id),
            )

    def record_skipped(self, job_id: str, scheduled_for: datetime, now: datetime, reason: str) -> bool:
        """Records a SKIPPED occurrence unless some process already recorded it."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO sched_executions"
                " (id, job_id, scheduled_for, started_at, finished_at, status, error)"
                " VALUES (?, ?, ?, NULL, ?, ?, ?)",
                (uuid.uuid4().hex, job_id, _us(scheduled_for), _us(now), ExecutionStatus.SKIPPED.value, reason),
            )
            return cur.rowcount == 1

    def recover(self, now: datetime) -> int:
        """Marks RUNNING rows whose owner is gone as FAILED "interrupted"; returns how many."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    "SELECT id, owner, lease_until FROM sched_executions WHERE status = ?",
                    (ExecutionStatus.RUNNING.value,),
                ).fetchall()
                count = 0
                for exec_id, owner, lease_until in rows:
                    if self._stale(owner, lease_until, now):
                        self._interrupt(exec_id, owner, now)
                        count += 1
                db.execute("COMMIT")
                return count
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # --- queries ------------------------------------------------------------------------

    def last_scheduled(self) -> dict[str, datetime]:
        """The latest recorded occurrence of every job (where a restart resumes)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, MAX(scheduled_for) FROM sched_executions GROUP BY job_id"
            ).fetchall()
        return {job_id: _EPOCH + timedelta(microseconds=us) for job_id, us in rows}

    def query(
        self,
        job_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[BackupExecution]:
        """Executions, newest scheduled first, filtered by job, status and scheduled time."""
        sql = "SELECT id, job_id, scheduled_for, started_at, finished_at, status, backup_set_id, error," \
              " bytes_read, bytes_written FROM sched_executions WHERE 1=1"
        args: list[object] = []
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(ExecutionStatus(status).value)
        if since is not None:
            sql += " AND scheduled_for >= ?"
            args.append(_us(since))
        sql += " ORDER BY scheduled_for DESC, job_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        result = []
        for r in rows:
            sched = _dt(r[2])
            assert sched is not None
            result.append(BackupExecution(
                id=r[0], job_id=r[1], scheduled_for=sched, started_at=_dt(r[3]), finished_at=_dt(r[4]),
                status=ExecutionStatus(r[5]), backup_set_id=r[6], error=r[7], bytes_read=r[8], bytes_written=r[9],
            ))
        return result

    # --- internals (called with the lock held, inside a transaction) ---------------------

    def _stale(self, owner: str | None, lease_until: int | None, now: datetime) -> bool:
        if owner == self.owner:
            return False  # our own run, still in this process
        return not _owner_alive(owner) or lease_until is None or lease_until < _us(now)

    def _interrupt(self, exec_id: str, owner: str | None, now: datetime) -> None:
        self._db.execute(
            "UPDATE sched_executions SET status = ?, finished_at = ?, lease_until = NULL,"
            " error = ? WHERE id = ?",
            (ExecutionStatus.FAILED.value, _us(now), f"interrupted: {owner or 'its scheduler'} stopped during the run",
             exec_id),
        )

    def _insert(
        self,
        job_id: str,
        sched: int,
        now: datetime,
        status: ExecutionStatus,
        *,
        error: str | None = None,
        owner: str | None = None,
        lease_until: int | None = None,
    ) -> str:
        exec_id = uuid.uuid4().hex
        started = _us(now) if status is ExecutionStatus.RUNNING else None
        finished = None if status is ExecutionStatus.RUNNING else _us(now)
        self._db.execute(
            "INSERT INTO sched_executions (id, job_id, scheduled_for, started_at, finished_at, status, error,"
            " owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (exec_id, job_id, sched, started, finished, status.value, error, owner, lease_until),
        )
        return exec_id
