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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .enums import ExecutionStatus
from .errors import CatalogError, ConfigError
from .jobs import BackupExecution
from .timestamps import from_us, to_us

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
    repository     TEXT,              -- a job's target repository (job_targets.py); NULL: this one
    UNIQUE (job_id, scheduled_for)
);
CREATE INDEX IF NOT EXISTS sched_executions_status ON sched_executions (status, job_id);
CREATE INDEX IF NOT EXISTS sched_executions_time ON sched_executions (scheduled_for);
"""

_MAX_INT = 2**63 - 1  # SQLite's INTEGER; sqlite3 raises OverflowError past it


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


EXECUTION_COLUMNS = (
    "id, job_id, scheduled_for, started_at, finished_at, status, backup_set_id, error, bytes_read, bytes_written,"
    " repository"
)


def executions_query(
    job_id: str | None, status: ExecutionStatus | str | None, since: datetime | None, limit: int | None
) -> tuple[str, list[object]]:
    """The one query behind `query` on both catalogs (SQLite here, PostgreSQL in claims.py):
    executions newest scheduled first, filtered by job, status and scheduled time."""
    sql = f"SELECT {EXECUTION_COLUMNS} FROM sched_executions WHERE 1=1"
    args: list[object] = []
    if job_id is not None:
        sql += " AND job_id = ?"
        args.append(job_id)
    if status is not None:
        try:
            args.append(ExecutionStatus(status).value)
        except ValueError:
            valid = ", ".join(s.value for s in ExecutionStatus)
            raise ConfigError(f"status {_shown(status)} is not one of {valid}") from None
        sql += " AND status = ?"
    if since is not None:
        sql += " AND scheduled_for >= ?"
        args.append(to_us(since))
    sql += " ORDER BY scheduled_for DESC, job_id"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"limit must be a whole number of at least 0, not {_shown(limit)}")
        sql += " LIMIT ?"
        args.append(min(limit, _MAX_INT))
    return sql, args


def _text(value: object, what: str) -> str:
    """A stored text, or a CatalogError naming the row and field (a row written by
    something else, or damage: never a TypeError later)."""
    if not isinstance(value, str):
        raise CatalogError(f"{what}: expected text, got {_shown(value)}")
    return value


def _opt_text(value: object, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _opt_count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise CatalogError(f"{what}: expected a non-negative integer, got {_shown(value)}")
    return value


def _opt_time(value: object, what: str) -> datetime | None:
    return None if value is None else from_us(value, what)


def _status(value: object, what: str) -> ExecutionStatus:
    try:
        return ExecutionStatus(_text(value, what))
    except ValueError:
        valid = ", ".join(s.value for s in ExecutionStatus)
        raise CatalogError(f"{what}: {_shown(value)} is not one of {valid}") from None


def new_owner() -> str:
    """This process's identity on claims: host, pid and a random token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner: object) -> bool:
    """False only when the owner is provably gone: a dead process on this host."""
    if not owner:
        return False
    if not isinstance(owner, str):
        return True  # unreadable (damage): only its lease can tell
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
        try:
            self._db = sqlite3.connect(db_path, timeout=60, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CatalogError(f"{db_path}: cannot open the run history: {exc}") from exc
        with self._locked() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            # WAL + NORMAL: a commit survives a process crash (what claims guard against);
            # only a power cut can lose the newest rows, as with the catalog itself.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            _add_repository_column(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; SQLite's errors (a damaged or foreign
        ``catalog.db``, a table of another shape) become a CatalogError naming the file."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise CatalogError(f"{self.path}: run history: {exc}") from exc

    def _where(self, row_id: object, fld: str) -> str:
        return f"{self.path}: sched_executions row {_shown(row_id)} field {fld!r}"

    # --- claims -------------------------------------------------------------------------

    def claim(self, job_id: str, scheduled_for: datetime, now: datetime, lease: timedelta) -> Claim:
        sched = to_us(scheduled_for)
        with self._locked() as db:
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
                    prev = from_us(prev_sched, self._where(exec_id, "scheduled_for"))
                    reason = f"previous run (scheduled for {prev.isoformat()}) is still running"
                    self._insert(job_id, sched, now, ExecutionStatus.SKIPPED, error=reason)
                    db.execute("COMMIT")
                    return Claim("busy", reason=reason)
                exec_id = self._insert(
                    job_id, sched, now, ExecutionStatus.RUNNING, owner=self.owner, lease_until=to_us(now + lease)
                )
                db.execute("COMMIT")
                return Claim("claimed", execution_id=exec_id)
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def renew(self, execution_id: str, until: datetime) -> None:
        with self._locked() as db:
            db.execute(
                "UPDATE sched_executions SET lease_until = ? WHERE id = ? AND status = ?",
                (to_us(until), execution_id, ExecutionStatus.RUNNING.value),
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
        repository: str | None = None,
    ) -> None:
        with self._locked() as db:
            db.execute(
                "UPDATE sched_executions SET status = ?, finished_at = ?, backup_set_id = ?, error = ?,"
                " bytes_read = ?, bytes_written = ?, repository = ?, lease_until = NULL WHERE id = ?",
                (
                    status.value,
                    to_us(finished_at),
                    backup_set_id,
                    error,
                    bytes_read,
                    bytes_written,
                    repository,
                    execution_id,
                ),
            )

    def record_skipped(self, job_id: str, scheduled_for: datetime, now: datetime, reason: str) -> bool:
        """Records a SKIPPED occurrence unless some process already recorded it."""
        with self._locked() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO sched_executions"
                " (id, job_id, scheduled_for, started_at, finished_at, status, error)"
                " VALUES (?, ?, ?, NULL, ?, ?, ?)",
                (uuid.uuid4().hex, job_id, to_us(scheduled_for), to_us(now), ExecutionStatus.SKIPPED.value, reason),
            )
            return cur.rowcount == 1

    def recover(self, now: datetime) -> int:
        """Marks RUNNING rows whose owner is gone as FAILED "interrupted"; returns how many."""
        with self._locked() as db:
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
        with self._locked() as db:
            rows = db.execute("SELECT job_id, MAX(scheduled_for) FROM sched_executions GROUP BY job_id").fetchall()
        out: dict[str, datetime] = {}
        for job_id, us in rows:
            what = f"{self.path}: sched_executions rows of job {_shown(job_id)}"
            out[_text(job_id, f"{what} field 'job_id'")] = from_us(us, f"{what} field 'scheduled_for'")
        return out

    def query(
        self,
        job_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[BackupExecution]:
        """Executions, newest scheduled first, filtered by job, status and scheduled time."""
        sql, args = executions_query(job_id, status, since, limit)
        with self._locked() as db:
            rows = db.execute(sql, args).fetchall()
        return [self._execution(r) for r in rows]

    def _execution(self, r: tuple[object, ...]) -> BackupExecution:
        return execution_from_row(self.path, r)

    # --- internals (called with the lock held, inside a transaction) ---------------------

    def _stale(self, owner: object, lease_until: object, now: datetime) -> bool:
        if owner == self.owner:
            return False  # our own run, still in this process
        # A lease that is not a number (damage) can never be renewed: it has expired.
        return not _owner_alive(owner) or type(lease_until) is not int or lease_until < to_us(now)

    def _interrupt(self, exec_id: str, owner: object, now: datetime) -> None:
        self._db.execute(
            "UPDATE sched_executions SET status = ?, finished_at = ?, lease_until = NULL, error = ? WHERE id = ?",
            (
                ExecutionStatus.FAILED.value,
                to_us(now),
                f"interrupted: {owner or 'its scheduler'} stopped during the run",
                exec_id,
            ),
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
        started = to_us(now) if status is ExecutionStatus.RUNNING else None
        finished = None if status is ExecutionStatus.RUNNING else to_us(now)
        self._db.execute(
            "INSERT INTO sched_executions (id, job_id, scheduled_for, started_at, finished_at, status, error,"
            " owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (exec_id, job_id, sched, started, finished, status.value, error, owner, lease_until),
        )
        return exec_id


def execution_from_row(path: Path, r: tuple[object, ...]) -> BackupExecution:
    """A ``sched_executions`` row (id, job_id, scheduled_for, started_at, finished_at,
    status, backup_set_id, error, bytes_read, bytes_written, repository), checked: a
    damaged field is a CatalogError naming `path`, the row and the field. Shared by both
    catalogs."""

    def where(fld: str) -> str:
        return f"{path}: sched_executions row {_shown(r[0])} field {fld!r}"

    rid = _text(r[0], where("id"))
    return BackupExecution(
        id=rid,
        job_id=_text(r[1], where("job_id")),
        scheduled_for=from_us(r[2], where("scheduled_for")),
        started_at=_opt_time(r[3], where("started_at")),
        finished_at=_opt_time(r[4], where("finished_at")),
        status=_status(r[5], where("status")),
        backup_set_id=_opt_text(r[6], where("backup_set_id")),
        error=_opt_text(r[7], where("error")),
        bytes_read=_opt_count(r[8], where("bytes_read")),
        bytes_written=_opt_count(r[9], where("bytes_written")),
        repository=_opt_text(r[10], where("repository")),
    )


def _add_repository_column(db: sqlite3.Connection) -> None:
    """A catalog.db made before jobs had targets lacks the column (``CREATE TABLE IF NOT
    EXISTS`` leaves its table as it was); two processes may add it at once."""
    if any(r[1] == "repository" for r in db.execute("PRAGMA table_info(sched_executions)")):
        return
    try:
        db.execute("ALTER TABLE sched_executions ADD COLUMN repository TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise
