"""The RMAN-style catalog: backup sets and their pieces in SQLite (WAL mode), reports,
and a rebuild from the per-set manifests.

The one reader of the ``sets`` and ``pieces`` rows: `BackupSet` (strict: a damaged row is
a CatalogError naming the set and the field) and `SetRow`/`PieceRow` (as stored, for the
verifier). Chains and recovery paths are not decided here: the rows go to the Rust chain
rules (`_core.recovery_path`, `recovery_chain`, `retention_plan`) in one columnar call.
Deleted sets leave a tombstone, the only thing that lets cleanup() remove a set
directory holding a manifest."""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core, catalog_db, manifest, store
from .catalog_db import Conn
from .enums import BackupType, SetStatus
from .errors import CatalogError, EncryptionError
from .manifest import Manifest
from .selection import Selection
from .timestamps import from_us as from_us  # re-exported: one conversion, imported from here too
from .timestamps import to_us as to_us

if TYPE_CHECKING:
    from .catalog_pg import RepositoryEntry
    from .catalog_record import Record as CatalogRecord

    # Imported where used: a backup neither plans retention nor reads a SQLite WAL
    # record, and every command's start paid for their dataclasses.
    from .retention import ChainRecord, RetentionDecision, RetentionPolicy

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKUP_SETS = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS databases (
    name TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, archive_dir TEXT,
    block_size INTEGER NOT NULL, algorithm TEXT NOT NULL, compression TEXT,
    registered_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sets (
    id TEXT PRIMARY KEY, database TEXT NOT NULL, backup_type TEXT NOT NULL, parent_id TEXT,
    started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL, status TEXT NOT NULL,
    size INTEGER NOT NULL, block_size INTEGER NOT NULL, algorithm TEXT NOT NULL,
    compression TEXT, tags TEXT NOT NULL, bytes_read INTEGER NOT NULL,
    file_count INTEGER NOT NULL, manifest TEXT NOT NULL, blockmap TEXT NOT NULL,
    blockmap_checksum TEXT NOT NULL);
-- Covers the chain query (every set of a database in time order) without a sort or a
-- table lookup: a retention plan over 50,000 sets reads the index alone.
CREATE INDEX IF NOT EXISTS sets_chain ON sets (database, finished_at, started_at, id, backup_type,
    parent_id, status);
DROP INDEX IF EXISTS sets_by_database;
CREATE INDEX IF NOT EXISTS sets_by_type ON sets (database, backup_type, finished_at);
CREATE INDEX IF NOT EXISTS sets_by_parent ON sets (parent_id);
CREATE TABLE IF NOT EXISTS pieces (
    id TEXT PRIMARY KEY, set_id TEXT NOT NULL REFERENCES sets(id) ON DELETE CASCADE,
    path TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
    algorithm TEXT NOT NULL, block_count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS pieces_by_set ON pieces (set_id);
-- A set deleted from the catalog whose files may still be on disk (a delete cut short):
-- the only thing that lets cleanup() remove a set directory holding a manifest.
CREATE TABLE IF NOT EXISTS tombstones (id TEXT PRIMARY KEY, deleted_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS archive_files (
    database TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL, set_id TEXT NOT NULL,
    PRIMARY KEY (database, name));
"""

_DB_COLUMNS = "name, path, kind, archive_dir, block_size, algorithm, compression, registered_at, dsn, selection"

# Schema changes after the first release, applied in order; PRAGMA user_version counts
# the ones a catalog has.
_MIGRATIONS = (
    # 1: postgresql databases keep their connection string (issue 14).
    "ALTER TABLE databases ADD COLUMN dsn TEXT",
    # 2: a file tree's selection rules (selection.py, JSON; NULL: none) (issue 17).
    "ALTER TABLE databases ADD COLUMN selection TEXT",
)


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version >= len(_MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated while we waited for the lock.
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        columns = {r[1] for r in conn.execute("PRAGMA table_info(databases)")}
        for n, sql in enumerate(_MIGRATIONS[version:], version + 1):
            if (n == 1 and "dsn" in columns) or (n == 2 and "selection" in columns):
                continue
            conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_SET_COLUMNS = (
    "id, database, backup_type, parent_id, started_at, finished_at, status, size, block_size, "
    "algorithm, compression, tags, bytes_read, file_count, manifest, blockmap, blockmap_checksum"
)


@dataclass(frozen=True)
class BackupPiece:
    """One data file of a set (`path` relative to the repository)."""

    id: str
    set_id: str
    path: str
    size: int
    checksum: str
    algorithm: str
    block_count: int


@dataclass(frozen=True)
class BackupSet:
    """One backup as the catalog records it. `until` compares with `finished_at`."""

    id: str
    database: str
    backup_type: BackupType
    parent_id: str | None
    started_at: datetime
    finished_at: datetime
    status: SetStatus
    size: int
    block_size: int
    algorithm: str
    pieces: tuple[BackupPiece, ...]
    tags: tuple[str, ...]
    compression: str | None = None
    bytes_read: int = 0
    file_count: int = 0
    manifest: str = ""
    blockmap: str = ""
    blockmap_checksum: str = ""


@dataclass(frozen=True)
class DatabaseEntry:
    """A registered backup source."""

    name: str
    path: str
    kind: str
    archive_dir: str | None
    block_size: int
    algorithm: str
    compression: str | None
    registered_at: datetime
    # How to reach a postgresql server (any libpq conninfo); None for other kinds.
    dsn: str | None = None
    # What a file tree's backups leave out (selection.py).
    selection: Selection = Selection()


@dataclass(frozen=True)
class SetRow:
    """A ``sets`` row as stored, read tolerantly: fields that do not parse are None and
    `problems` says why. What a verifier reads, so a damaged row is a finding, not a
    crash; `BackupSet` is the strict form the rest of the package uses."""

    id: str
    database: str | None
    backup_type: str | None
    parent_id: str | None
    status: str | None
    algorithm: str | None
    manifest: str | None
    blockmap: str | None
    blockmap_checksum: str | None
    started_at: int | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class PieceRow:
    """A ``pieces`` row as stored (any field may be None when the row is damaged)."""

    id: str
    set_id: str
    path: str | None
    size: int | None
    checksum: str | None
    algorithm: str | None
    block_count: int | None


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did: the sets it registered, and each manifest it skipped with why
    (a path relative to the repository, and a message naming the file and the field)."""

    registered: int
    skipped: tuple[tuple[str, str], ...] = ()


class BackupCatalog:
    """Backup sets and pieces of one repository, in ``REPO/catalog.db``.

    `path` is the catalog file or the repository directory. Safe to share between
    threads (one connection behind a lock); other processes use their own connection,
    and SQLite's WAL mode with a busy timeout keeps them apart.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_backup_sets: int = DEFAULT_MAX_BACKUP_SETS,
        clock: Callable[[], datetime] | None = None,
        url: str | None = None,
    ) -> None:
        # A PostgreSQL URL: this repository's rows in a shared catalog (catalog_pg.py).
        self.url = url
        self.path = Path(path)
        if self.path.is_dir():
            # A repository directory: its catalog file.
            self.path = self.path / store.CATALOG_FILE
        self.repository = self.path.parent
        self.max_backup_sets = max_backup_sets
        # The manager's clock: "now" of retention decisions comes from it, so tests can
        # simulate months in seconds.
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self.shared: RepositoryEntry | None = None  # set by _connect for a shared catalog
        self._conn = self._connect()
        # chain_rows per database, with the catalog state it was read at (see there).
        self._chain_cache: dict[str, tuple[tuple[object, ...], _core.ChainRows]] = {}

    def _connect(self) -> Conn:
        if self.url is not None:
            from . import catalog_pg

            shared, self.shared = catalog_pg.open_repository(self.url, self.repository)
            return shared
        try:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            _migrate(conn)
        except SQLITE_ERRORS as exc:
            raise sqlite_error(self.path, exc, "cannot open it") from exc
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def connection(self) -> Conn:
        """The SQLite connection (other modules add their tables to the same file)."""
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; SQLite's own errors
        come out as CatalogError naming this catalog (`sqlite_error`)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except SQLITE_ERRORS as exc:
                raise sqlite_error(self.path, exc) from exc

    def _query(self, sql: str, args: Sequence[Any] = (), what: str = "") -> list[Any]:
        """The rows of one read; `what` says what it read, for an error's message."""
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except SQLITE_ERRORS as exc:
                raise sqlite_error(self.path, exc, what) from exc

    # --- databases -------------------------------------------------------------------

    def put_database(self, entry: DatabaseEntry) -> None:
        with self.transaction() as c:
            c.execute(
                f"INSERT OR REPLACE INTO databases ({_DB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.name,
                    entry.path,
                    entry.kind,
                    entry.archive_dir,
                    entry.block_size,
                    entry.algorithm,
                    entry.compression,
                    to_us(entry.registered_at),
                    entry.dsn,
                    entry.selection.to_json(),
                ),
            )

    def get_database(self, name: str) -> DatabaseEntry:
        rows = self._query("SELECT * FROM databases WHERE name = ?", (name,))
        if not rows:
            known = ", ".join(d.name for d in self.list_databases()) or "none"
            raise CatalogError(f"unknown database {name!r} (registered: {known})")
        return _database(rows[0])

    def list_databases(self) -> list[DatabaseEntry]:
        return [_database(r) for r in self._query("SELECT * FROM databases ORDER BY name")]

    # --- sets ------------------------------------------------------------------------

    def register_set(self, backup_set: BackupSet, archive_files: Sequence[tuple[str, str]] = ()) -> None:
        """Inserts a set, its pieces and its archive files in one transaction. Call only
        once the set's files are durable in ``sets/<id>/``."""
        with self.transaction() as c:
            fence = catalog_db.REGISTRATION_FENCE.get()
            if fence is not None:
                fence(c)
            self._insert(c, backup_set, archive_files, guard=True)

    def _insert(self, c: Conn, s: BackupSet, archive_files: Sequence[tuple[str, str]], guard: bool) -> None:
        if guard:
            (count,) = c.execute("SELECT count(*) FROM sets WHERE database = ?", (s.database,)).fetchone()
            if count >= self.max_backup_sets:
                raise CatalogError(
                    f"database {s.database!r} already has {count} backup sets (max_backup_sets="
                    f"{self.max_backup_sets}); apply a retention policy to delete obsolete sets "
                    "(rustybackup retention) or raise max_backup_sets"
                )
        c.execute(
            f"INSERT INTO sets ({_SET_COLUMNS}) VALUES ({', '.join('?' * 17)})",
            (
                s.id,
                s.database,
                s.backup_type.value,
                s.parent_id,
                to_us(s.started_at),
                to_us(s.finished_at),
                s.status.value,
                s.size,
                s.block_size,
                s.algorithm,
                s.compression,
                json.dumps(list(s.tags)),
                s.bytes_read,
                s.file_count,
                s.manifest,
                s.blockmap,
                s.blockmap_checksum,
            ),
        )
        c.executemany(
            "INSERT INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(p.id, p.set_id, p.path, p.size, p.checksum, p.algorithm, p.block_count) for p in s.pieces],
        )
        c.executemany(
            "INSERT OR REPLACE INTO archive_files VALUES (?, ?, ?, ?)",
            [(s.database, name, digest, s.id) for name, digest in archive_files],
        )

    def remove_set(self, set_id: str) -> None:
        """Deletes a set's rows (pieces and archive files too) and leaves its tombstone,
        which lets cleanup() remove the files should the delete stop before they go."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (set_id, to_us(datetime.now(UTC))))
            c.execute("DELETE FROM pieces WHERE set_id = ?", (set_id,))
            c.execute("DELETE FROM archive_files WHERE set_id = ?", (set_id,))
            c.execute("DELETE FROM sets WHERE id = ?", (set_id,))

    def mark_status(self, set_id: str, status: SetStatus) -> None:
        """Sets a set's status (verification marks CORRUPT; crosscheck EXPIRED)."""
        with self.transaction() as c:
            cur = c.execute("UPDATE sets SET status = ? WHERE id = ?", (SetStatus(status).value, set_id))
            if cur.rowcount == 0:
                raise CatalogError(f"unknown backup set {set_id!r}")

    def mark_statuses(self, statuses: dict[str, SetStatus]) -> list[str]:
        """Sets several statuses in one transaction; returns the ids it did not find."""
        gone = []
        with self.transaction() as c:
            for set_id, status in statuses.items():
                if (
                    c.execute("UPDATE sets SET status = ? WHERE id = ?", (SetStatus(status).value, set_id)).rowcount
                    == 0
                ):
                    gone.append(set_id)
        return gone

    def update_sealed(self, changes: dict[str, tuple[dict[str, tuple[int, str]], str]]) -> None:
        """Records re-sealed files (reencrypt.py), one transaction for a whole chain:
        set id -> ({piece id: (size, checksum)}, block map checksum)."""
        with self.transaction() as c:
            for set_id, (pieces, blockmap_checksum) in changes.items():
                cur = c.execute("UPDATE sets SET blockmap_checksum = ? WHERE id = ?", (blockmap_checksum, set_id))
                if cur.rowcount == 0:
                    raise CatalogError(f"unknown backup set {set_id!r}")
                for pid, (size, checksum) in pieces.items():
                    c.execute(
                        "UPDATE pieces SET size = ?, checksum = ? WHERE id = ? AND set_id = ?",
                        (size, checksum, pid, set_id),
                    )

    def replace_sealed(self, changes: dict[str, tuple[Sequence[BackupPiece], str, str]]) -> None:
        """Records re-sealed sets whose files have new names (an object store's:
        reencrypt_remote.py), one transaction: set id -> (its pieces, block map path,
        block map checksum). The set rows stay (status, tags and the rest)."""
        with self.transaction() as c:
            for set_id, (pieces, blockmap, blockmap_checksum) in changes.items():
                cur = c.execute(
                    "UPDATE sets SET blockmap = ?, blockmap_checksum = ? WHERE id = ?",
                    (blockmap, blockmap_checksum, set_id),
                )
                if cur.rowcount == 0:
                    raise CatalogError(f"unknown backup set {set_id!r}")
                c.execute("DELETE FROM pieces WHERE set_id = ?", (set_id,))
                c.executemany(
                    "INSERT INTO pieces (id, set_id, path, size, checksum, algorithm, block_count) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(p.id, set_id, p.path, p.size, p.checksum, p.algorithm, p.block_count) for p in pieces],
                )

    def set_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT id FROM sets")}

    def tombstones(self) -> set[str]:
        """Ids of sets deleted from the catalog (their directories may be removed)."""
        return {r[0] for r in self._query("SELECT id FROM tombstones")}

    def sets_of(self, database: str, set_ids: Iterable[str]) -> set[str]:
        """Those of `set_ids` that are sets of `database`."""
        ids = list(set_ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" * len(part))
            found.update(
                r[0]
                for r in self._query(f"SELECT id FROM sets WHERE database = ? AND id IN ({marks})", (database, *part))
            )
        return found

    def has_sets(self) -> bool:
        return bool(self._query("SELECT EXISTS (SELECT 1 FROM sets)")[0][0])

    def archive_file(self, database: str, name: str) -> tuple[str, str] | None:
        """(digest, set_id) of an archive file already backed up under `name`."""
        rows = self._query("SELECT digest, set_id FROM archive_files WHERE database = ? AND name = ?", (database, name))
        return (rows[0][0], rows[0][1]) if rows else None

    def get_set(self, set_id: str) -> BackupSet:
        store.check_set_id(set_id)
        rows = self._query(f"SELECT {_SET_COLUMNS} FROM sets WHERE id = ?", (set_id,))
        if not rows:
            raise CatalogError(f"unknown backup set {set_id!r}")
        return self._set(rows[0])

    def list_sets(
        self,
        database: str | None = None,
        backup_type: BackupType | str | None = None,
        since: datetime | None = None,
    ) -> list[BackupSet]:
        """Sets oldest first, filtered by database, type and start time (>= since)."""
        return list(self.iter_sets(database, backup_type, since))

    def iter_sets(
        self,
        database: str | None = None,
        backup_type: BackupType | str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        with_pieces: bool = True,
    ) -> Iterator[BackupSet]:
        """`list_sets` as a stream: oldest first, a thousand rows at a time, from one
        read snapshot (a connection of its own, so no write waits on it and the rows do
        not shift under it). With `limit`, the newest `limit` sets (still oldest first).
        `with_pieces=False` leaves every `pieces` empty and skips their query (a listing
        that does not show them)."""
        where: list[str] = []
        args: list[Any] = []
        if database is not None:
            where.append("database = ?")
            args.append(database)
        if backup_type is not None:
            where.append("backup_type = ?")
            args.append(BackupType(backup_type).value)
        if since is not None:
            where.append("started_at >= ?")
            args.append(to_us(since))
        sql = f"SELECT {_SET_COLUMNS} FROM sets" + (" WHERE " + " AND ".join(where) if where else "")
        if limit is not None:
            sql = (
                f"SELECT * FROM ({sql} ORDER BY started_at DESC, rowid DESC LIMIT ?) AS newest ORDER BY started_at, id"
            )
            args.append(limit)
        else:
            sql += " ORDER BY started_at, rowid"
        with self._lock:
            shared = catalog_db.is_shared(self._conn)
            file = "" if shared else next((r[2] for r in self._query("PRAGMA database_list") if r[1] == "main"), "")
        if shared:  # PostgreSQL: a server-side cursor in a read-only snapshot of its own
            assert isinstance(self._conn, catalog_db.PgConnection)
            with self._conn.snapshot() as snap:
                for batch in snap.stream(sql, args, 1000):
                    pieces = _pieces_on(snap, [r[0] for r in batch]) if with_pieces else {}
                    yield from (self._set(r, pieces) for r in batch)
            return
        if not file:  # an in-memory catalog: its one connection, all at once
            rows = self._query(sql, args)
            pieces = self._pieces_for([r[0] for r in rows]) if with_pieces else {}
            yield from (self._set(r, pieces) for r in rows)
            return
        reader = sqlite3.connect(f"{Path(file).as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            reader.execute("BEGIN")
            cur = reader.execute(sql, args)
            while batch := cur.fetchmany(1000):
                pieces = _pieces_on(reader, [r[0] for r in batch]) if with_pieces else {}
                yield from (self._set(r, pieces) for r in batch)
        except SQLITE_ERRORS as exc:
            raise sqlite_error(Path(file), exc, "cannot read its sets") from exc
        finally:
            reader.close()

    def newest_set(self, database: str, backup_type: BackupType | str) -> BackupSet | None:
        """The newest AVAILABLE set of `database` of `backup_type` (by finish), or None;
        one indexed row however many sets exist."""
        rows = self._query(
            f"SELECT {_SET_COLUMNS} FROM sets WHERE database = ? AND backup_type = ? AND status = 'available' "
            "ORDER BY finished_at DESC, started_at DESC, id DESC LIMIT 1",
            (database, BackupType(backup_type).value),
        )
        return self._set(rows[0]) if rows else None

    # --- rows as stored (tolerant: what a verifier reads) -------------------------------

    def set_rows(self, database: str | None = None) -> list[SetRow]:
        """Every ``sets`` row (of `database`), oldest first, as stored."""
        where, args = ("WHERE database = ?", (database,)) if database is not None else ("", ())
        return [_set_row(r) for r in self._query(_ROW_SQL.format(where=where), args)]

    def set_row(self, set_id: str) -> SetRow | None:
        rows = self._query(_ROW_SQL.format(where="WHERE id = ?"), (set_id,))
        return _set_row(rows[0]) if rows else None

    def piece_rows(self, set_ids: Sequence[str]) -> dict[str, list[PieceRow]]:
        """The ``pieces`` rows of `set_ids` as stored, by set id, ordered by piece id."""
        out: dict[str, list[PieceRow]] = {}
        for i in range(0, len(set_ids), 500):
            part = list(set_ids[i : i + 500])
            marks = ", ".join("?" * len(part))
            for r in self._query(
                f"SELECT id, set_id, path, size, checksum, algorithm, block_count FROM pieces "
                f"WHERE set_id IN ({marks}) ORDER BY id",
                part,
            ):
                row = PieceRow(str(r[0]), str(r[1]), _text(r[2]), _int(r[3]), _text(r[4]), _text(r[5]), _int(r[6]))
                out.setdefault(row.set_id, []).append(row)
        return out

    def database_names(self) -> set[str]:
        return {str(r[0]) for r in self._query("SELECT name FROM databases")}

    def children(self, set_id: str) -> list[str]:
        return [r[0] for r in self._query("SELECT id FROM sets WHERE parent_id = ? ORDER BY started_at", (set_id,))]

    def chain(self, set_id: str) -> list[BackupSet]:
        """The set and its ancestors back to its FULL, base first."""
        return self.get_sets(self.chain_ids(set_id))

    def chain_ids(self, set_id: str) -> list[str]:
        """Ids of the set and its ancestors, base first, whatever their status: the Rust
        chain walk (`_core.recovery_chain`) over the rows of the set's database."""
        store.check_set_id(set_id)
        rows = self._query("SELECT database FROM sets WHERE id = ?", (set_id,))
        if not rows:
            raise CatalogError(f"unknown backup set {set_id!r}")
        return _core.recovery_chain(self.chain_rows(rows[0][0]), set_id)

    def find_recovery_path(self, database: str, until: datetime | None = None) -> list[BackupSet]:
        """Base first: the FULL, the DIFFERENTIAL and INCREMENTALs on it, then the
        ARCHIVE_LOG sets up to `until` (DESIGN.md); NoRecoveryPath when nothing reaches it.
        The rules are the Rust core's alone (`rust/src/chain/recovery.rs`); for a
        postgresql database the WAL decides which logs reach `until` (postgres/recovery.py)."""
        kind = self._query("SELECT kind FROM databases WHERE name = ?", (database,))
        if kind and kind[0][0] == "postgresql":
            return self._postgresql_path(database, until)
        until_us = None if until is None else to_us(until)
        path = self.get_sets(_core.recovery_path(self.chain_rows(database), until_us, database=database))
        if kind and kind[0][0] == "sqlite":
            return self._sqlite_path(database, path, until_us)
        return path

    def _sqlite_path(self, database: str, path: list[BackupSet], until_us: int | None) -> list[BackupSet]:
        """For a sqlite database, the WAL capture sets that the replay to `until_us`
        needs, in order, after the data chain; NoRecoveryPath names a hole in the captured
        frames (sqlite_pitr.py decides from the manifests)."""
        from .sqlite_pitr import plan
        from .sqlite_wal import WalCapture

        data = [s for s in path if s.backup_type is not BackupType.ARCHIVE_LOG]
        logs = [s for s in path if s.backup_type is BackupType.ARCHIVE_LOG]
        if not data or not logs:
            return path
        manifests = [(s, manifest.load(self.repository / s.manifest, set_id=s.id)) for s in logs]
        if until_us is not None:
            manifests += self._later_captures(database, manifests, until_us)
            logs = [s for s, _ in manifests]
        base = data[-1]
        steps = plan(
            database, base, manifest.load(self.repository / base.manifest, set_id=base.id), manifests, until_us
        )
        used = {step.set_id for step in steps.steps}
        other = [s for s, m in manifests if not isinstance(m.wal, WalCapture)]
        return data + [s for s in logs if s.id in used] + other

    def _later_captures(
        self, database: str, chosen: list[tuple[BackupSet, Manifest]], until_us: int
    ) -> list[tuple[BackupSet, Manifest]]:
        """Capture sets after the chosen ones that hold commits seen by `until_us`: a
        capturer registers a set after it saw its commits (the next set's frames were
        spooled while the one before was being registered; a killed capturer's spool is
        registered by the next start), so such a set can finish long after `until`."""
        from .sqlite_wal import WalCapture

        have = {s.id for s, _ in chosen}
        out: list[tuple[BackupSet, Manifest]] = []
        for s in self.iter_sets(database, BackupType.ARCHIVE_LOG, since=chosen[-1][0].started_at, with_pieces=False):
            if s.id in have or s.status is not SetStatus.AVAILABLE:
                continue
            m = manifest.load(self.repository / s.manifest, set_id=s.id)
            seen = [r.commits[0][1] for r in m.wal.chain if r.commits] if isinstance(m.wal, WalCapture) else []
            if not seen:
                continue
            if min(seen) > until_us:
                break
            out.append((self.get_set(s.id), m))
        return out

    def _postgresql_path(self, database: str, until: datetime | None) -> list[BackupSet]:
        from .engine import BackupManager
        from .postgres.recovery import plan

        manager = BackupManager(self.repository, catalog=self.url)
        try:
            return plan(manager, manager.catalog.get_database(database), until).sets(self)
        finally:
            manager.catalog.close()

    # --- retention --------------------------------------------------------------------

    def chain_rows(self, database: str) -> _core.ChainRows:
        """Every set of `database` for the chain logic, oldest first, handed to Rust in one
        columnar call (`_core.ChainRows.from_columns`), which checks every value once.

        The rows are kept until the catalog changes, so a retention plan and the recovery
        paths asked after it read the table once: SQLite's `data_version` moves when another
        connection commits, this connection's `total_changes` when it writes. Inside a
        transaction nothing is kept (a rollback would leave its rows behind).

        Raises:
            CatalogError: a malformed row; the message names the catalog, the row, its id
                and the column.
        """
        with self._lock:
            conn = self._conn
            state = catalog_db.change_state(conn)
            cached = self._chain_cache.get(database)
            if state is not None and cached is not None and cached[0] == state and not conn.in_transaction:
                return cached[1]
            rows = self.retention_rows(database)
            # One pass per column: cheaper than zip(*rows), and empty rows give empty columns.
            columns = [list(map(itemgetter(k), rows)) for k in range(6)]
            try:
                built = _core.ChainRows.from_columns(*columns)
            except (TypeError, ValueError) as exc:
                raise CatalogError(f"catalog {self.path}: sets of database {database!r}: {exc}") from exc
            if state is not None and not conn.in_transaction:
                self._chain_cache[database] = (state, built)
            return built

    def retention_rows(self, database: str) -> list[ChainRecord]:
        """Every set of `database` as the chain tuples retention resolves, oldest first (by
        finish, then start, then id: the covering index `sets_chain` serves it unsorted).
        The values are as stored: `chain_rows` and the chain functions check them."""
        what = f"cannot read the sets of database {database!r}"
        try:
            rows: list[ChainRecord] = self._query(
                "SELECT id, backup_type, parent_id, started_at, finished_at, status FROM sets "
                "WHERE database = ? ORDER BY finished_at, started_at, id",
                (database,),
                what,  # e.g. text that is not UTF-8
            )
        except catalog_db.DbError as exc:  # the shared catalog's; SQLite's are named by _query
            raise CatalogError(f"catalog {self.path}: {what}: {exc}") from exc
        return rows

    def retention_plan(
        self,
        database: str,
        policy: RetentionPolicy,
        now: datetime | None = None,
        *,
        tz: str = "UTC",
        protected: Iterable[str] = (),
        force: bool = False,
    ) -> list[RetentionDecision]:
        """A keep/delete decision with its reason for every set of `database`, oldest first.

        The resolution (rust/src/chain/retention.rs) keeps chains whole, keeps the
        archive logs a kept point needs, never drops the last usable FULL unless `force`,
        and keeps `protected` sets (being read by a restore or verification).
        """
        self.get_database(database)
        moment = now if now is not None else self.clock()
        from .retention import plan_retention

        return plan_retention(self.chain_rows(database), policy, moment, tz, protected, force)

    def obsolete(
        self,
        database: str,
        policy: RetentionPolicy,
        now: datetime | None = None,
        *,
        tz: str = "UTC",
        protected: Iterable[str] = (),
        force: bool = False,
    ) -> list[str]:
        """The ids `policy` would delete, newest first (the order deletion must take)."""
        plan = self.retention_plan(database, policy, now, tz=tz, protected=protected, force=force)
        return [d.set_id for d in reversed(plan) if not d.keep]

    def get_sets(self, ids: Sequence[str]) -> list[BackupSet]:
        """Several sets in the order given, with two queries per 500 ids."""
        found: dict[str, BackupSet] = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            rows = self._query(f"SELECT {_SET_COLUMNS} FROM sets WHERE id IN ({', '.join('?' * len(part))})", part)
            pieces = self._pieces_for([r[0] for r in rows])
            found.update((r[0], self._set(r, pieces)) for r in rows)
        missing = [i for i in ids if i not in found]
        if missing:
            raise CatalogError(f"unknown backup set {missing[0]!r}")
        return [found[i] for i in ids]

    # --- reports ---------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Counts, sizes and chains per database (what RMAN's LIST BACKUP SUMMARY shows)."""
        out: dict[str, Any] = {"databases": {}, "total_sets": 0, "total_size": 0}
        names = [d.name for d in self.list_databases()]
        names += [r[0] for r in self._query("SELECT DISTINCT database FROM sets") if r[0] not in names]
        for name in names:
            by_type = {t.value: 0 for t in BackupType}
            by_status = {s.value: 0 for s in SetStatus}
            rows = self._query(
                "SELECT backup_type, status, count(*), CAST(sum(size) AS BIGINT) FROM sets WHERE database = ? "
                "GROUP BY 1, 2",
                (name,),
            )
            size = 0
            for btype, status, count, total in rows:
                by_type[btype] += count
                by_status[status] += count
                size += total or 0
            (first, last, read) = self._query(
                "SELECT min(finished_at), max(finished_at), CAST(sum(bytes_read) AS BIGINT) FROM sets "
                "WHERE database = ?",
                (name,),
            )[0]
            count = sum(by_type.values())
            out["databases"][name] = {
                "sets": count,
                "by_type": by_type,
                "by_status": by_status,
                "size": size,
                "bytes_read": read or 0,
                "chains": by_type["full"],
                "oldest": None if first is None else from_us(first).isoformat(),
                "newest": None if last is None else from_us(last).isoformat(),
            }
            out["total_sets"] += count
            out["total_size"] += size
        return out

    def export_json(self, path: str | os.PathLike[str]) -> None:
        """Writes databases, sets and pieces as one JSON document (atomically), streaming
        the sets so a large catalog is never held in memory at once."""
        with self._lock, store.atomic_writer(Path(path)) as fh:
            dbs = [
                {**d.__dict__, "registered_at": d.registered_at.isoformat(), "selection": d.selection.plain()}
                for d in self.list_databases()
            ]
            fh.write(('{"format": 1, "databases": ' + json.dumps(dbs) + ', "sets": [').encode())
            try:
                cur = self._conn.execute(f"SELECT {_SET_COLUMNS} FROM sets ORDER BY started_at, rowid")
                first = True
                while batch := cur.fetchmany(1000):
                    pieces = self._pieces_for([r[0] for r in batch])
                    for row in batch:
                        fh.write(
                            (("" if first else ",") + "\n" + json.dumps(_set_json(self._set(row, pieces)))).encode()
                        )
                        first = False
            except SQLITE_ERRORS as exc:
                raise sqlite_error(self.path, exc, "cannot export its sets") from exc
            fh.write(b"\n]}\n")

    def rebuild(self) -> int:
        """Re-creates the sets, pieces, archive-file and database rows from the
        manifests in ``sets/`` (RMAN's RESYNC from backup pieces). Returns the number of
        sets registered. Other modules' tables are left alone."""
        return self.rebuild_report().registered

    def rebuild_report(self) -> RebuildReport:
        """`rebuild`, telling which manifests were skipped and why. One transaction:
        interrupted, it leaves the catalog as it was. Manifests that do not load, that
        describe another set than their directory names (a copied set directory) or a
        deleted set (a tombstone) are skipped and reported, never registered."""
        repo = store.Repository(self.repository, create=False)
        with self.transaction() as c:
            for table in ("pieces", "archive_files", "sets"):
                c.execute(f"DELETE FROM {table}")
            report = _fill(c, repo, self.tombstones(), self)
        _log_report(report)
        return report

    def register_manifests(self, manifests: Iterable[Path]) -> RebuildReport:
        """Registers the sets of some manifests of this catalog's repository as `rebuild`
        would, leaving the other sets alone (a remote repository's cache catching up with
        the bucket, a copied set). One transaction; the bad ones are skipped, reported."""
        repo = store.Repository(self.repository, create=False)
        with self.transaction() as c:
            report = _fill(c, repo, self.tombstones(), self, manifests)
        for _, why in report.skipped:
            log.warning("not registered: %s", why)
        return report

    def register_records(self, records: Iterable[tuple[str, CatalogRecord]]) -> RebuildReport:
        """Registers sets from the clear catalog records of an encrypted bucket (``where``,
        record) on a host that cannot open their manifests (catalog_record.py), as
        `register_manifests` would. One transaction; a set that clashes is skipped."""
        tombstones = self.tombstones()
        with self.transaction() as c:
            reg = _Registrar(c, self, tombstones)
            for where, rec in records:
                s = rec.backup_set
                if reg.deleted(where, s.id):
                    continue
                db_row = (s.database, rec.source_path, rec.kind, rec.archive_dir, s.block_size, s.algorithm)
                reg.register(where, s, rec.archive, (*db_row, s.compression, to_us(s.started_at)))
        report = reg.report()
        _log_report(report)
        return report

    # --- helpers ---------------------------------------------------------------------

    def _pieces_for(self, set_ids: Sequence[str]) -> dict[str, list[BackupPiece]]:
        with self._lock:
            try:
                return _pieces_on(self._conn, set_ids)
            except SQLITE_ERRORS as exc:
                raise sqlite_error(self.path, exc) from exc

    def _set(self, row: Sequence[Any], pieces: dict[str, list[BackupPiece]] | None = None) -> BackupSet:
        sid = row[0]
        if not manifest.is_set_id(sid):
            raise CatalogError(f"catalog {self.path}: a sets row's id {_shown(sid)} is not a backup set id")
        if row[3] is not None and not manifest.is_set_id(row[3]):
            raise CatalogError(f"catalog {self.path}: set {sid}: parent_id {_shown(row[3])} is not a backup set id")
        try:
            # Dict look-ups and a tags cache: a listing builds 50,000 of these.
            btype, status, tags = _BY_TYPE[row[2]], _BY_STATUS[row[6]], _tags(row[11])
            started_at, finished_at = from_us(row[4]), from_us(row[5])
            if not all(type(row[i]) is int and row[i] >= 0 for i in _SET_COUNTS):
                raise TypeError("a count is not a non-negative integer")
        except (KeyError, ValueError, TypeError, CatalogError) as exc:
            raise CatalogError(f"catalog {self.path}: set {sid}: {_row_fault(row, exc)}") from None
        if pieces is None:
            pieces = self._pieces_for([sid])
        return BackupSet(
            id=sid,
            database=row[1],
            backup_type=btype,
            parent_id=row[3],
            started_at=started_at,
            finished_at=finished_at,
            status=status,
            size=row[7],
            block_size=row[8],
            algorithm=row[9],
            compression=row[10],
            tags=tags,
            bytes_read=row[12],
            file_count=row[13],
            manifest=row[14],
            blockmap=row[15],
            blockmap_checksum=row[16],
            pieces=tuple(sorted(pieces.get(row[0], []), key=lambda p: p.id)),
        )


_BY_TYPE = {t.value: t for t in BackupType}
_BY_STATUS = {s.value: s for s in SetStatus}


@functools.lru_cache(maxsize=4096)
def _tags(text: str) -> tuple[str, ...]:
    tags = json.loads(text)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("not a JSON list of strings")
    return tuple(tags)


def _row_fault(row: Sequence[Any], exc: BaseException) -> str:
    """Which field of a sets row did not parse (the fast path above only says that one
    did not)."""
    if row[2] not in _BY_TYPE:
        return f"backup_type {_shown(row[2])} is not one of {', '.join(_BY_TYPE)}"
    if row[6] not in _BY_STATUS:
        return f"status {_shown(row[6])} is not one of {', '.join(_BY_STATUS)}"
    for name, value in (("started_at", row[4]), ("finished_at", row[5])):
        try:
            from_us(value, name)
        except CatalogError as bad:
            return str(bad)
    try:
        _tags(row[11])
    except (ValueError, TypeError) as bad:
        return f"tags {_shown(row[11])}: {bad}"
    for i, name in _SET_COUNTS.items():
        if type(row[i]) is not int or row[i] < 0:
            return f"{name} {_shown(row[i])} is not a non-negative integer"
    return str(exc)


# Columns of a sets row that hold sizes and counts, by position in _SET_COLUMNS.
_SET_COUNTS = {7: "size", 8: "block_size", 12: "bytes_read", 13: "file_count"}


_ROW_SQL = (
    "SELECT id, database, backup_type, parent_id, status, algorithm, manifest, blockmap, "
    "blockmap_checksum, started_at FROM sets {where} ORDER BY started_at, rowid"
)
_KNOWN_STATUS = {s.value for s in SetStatus}
_KNOWN_TYPES = {t.value for t in BackupType}


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _text(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def _set_row(r: Sequence[object]) -> SetRow:
    sid = str(r[0])
    problems: list[str] = []
    if not manifest.is_set_id(r[0]):
        problems.append(f"catalog row of set {_shown(r[0])}: the id is not a backup set id")
    btype = _text(r[2])
    if btype not in _KNOWN_TYPES:
        problems.append(f"catalog row of set {sid}: unknown backup_type {r[2]!r}")
        btype = None
    status = _text(r[4])
    if status not in _KNOWN_STATUS:
        problems.append(f"catalog row of set {sid}: unknown status {r[4]!r}")
        status = None
    for name, value in (("manifest", r[6]), ("blockmap", r[7])):
        if _text(value) is None:
            problems.append(f"catalog row of set {sid}: no {name} path")
    return SetRow(
        id=sid,
        database=_text(r[1]),
        backup_type=btype,
        parent_id=_text(r[3]),
        status=status,
        algorithm=_text(r[5]),
        manifest=_text(r[6]),
        blockmap=_text(r[7]),
        blockmap_checksum=_text(r[8]),
        started_at=_int(r[9]),
        problems=tuple(problems),
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# What SQLite raises on a damaged or foreign file: its own errors, and text that is not
# UTF-8 where it reads a table's shape.
SQLITE_ERRORS = (sqlite3.Error, UnicodeDecodeError)
_DAMAGED = ("malformed", "not a database", "could not decode", "codec can't decode")


def sqlite_error(path: Path, exc: BaseException, what: str = "") -> CatalogError:
    """SQLite's error on the catalog at `path` as a CatalogError naming the file; for
    a damaged file, what to do (the sets' manifests hold all their rows)."""
    text = f"catalog {path}: {what + ': ' if what else ''}{exc}"
    if any(word in str(exc).lower() for word in _DAMAGED):
        text += (
            "; the file is damaged: move it aside and the next command registers the sets again from "
            "their manifests (job definitions and run history are kept only in it)"
        )
    return CatalogError(text)


def _fill(
    c: Conn,
    repo: store.Repository,
    tombstones: set[str],
    catalog: BackupCatalog,
    manifests: Iterable[Path] | None = None,
) -> RebuildReport:
    """Inserts the rows of every usable manifest of `repo` (or of `manifests`, some of
    them) through `c` (inside the caller's transaction); each set in a savepoint of its
    own, so one bad set is skipped without undoing the others."""
    reg = _Registrar(c, catalog, tombstones)
    for mpath in repo.manifests() if manifests is None else manifests:
        name = mpath.parent.name
        where = f"{store.SETS_DIR}/{name}/{store.MANIFEST}"
        try:
            m = manifest.load(mpath, where=where)
        except CatalogError as exc:
            reg.skipped.append((where, str(exc)))
            continue
        except EncryptionError as exc:
            from . import keys

            # Sealed with a key this host holds, an envelope that does not open was
            # changed: this set's damage, skipped and reported as a damaged plain
            # manifest is. A key this host lacks (none given, a keyring from before a
            # rotation) opens no set: the error says which.
            if not keys.holds_key_of(repo.root, mpath.read_bytes()):
                raise
            reg.skipped.append((where, str(exc)))
            continue
        if m.id != name:
            reg.skipped.append(
                (
                    where,
                    f"{where}: holds set {m.id}, not the set its directory name {name!r} names "
                    "(a copied or renamed set directory); not registered",
                )
            )
            continue
        if reg.deleted(where, m.id):
            continue
        backup_set, archive = set_from_manifest(m)
        r = m.record
        kind = _source_kind(m)
        db_row = (r.database, r.source_path, kind, r.archive_dir, r.block_size, r.algorithm, r.compression)
        fix = functools.partial(_correct_database, r=r, kind=kind)
        reg.register(where, backup_set, archive, (*db_row, r.started_at_us), fix)
    return reg.report()


class _Registrar:
    """What `rebuild` and `register_records` share: sets registered one by one through
    `c` (inside the caller's transaction), deleted ones and clashes skipped with why,
    counted for the `RebuildReport`."""

    def __init__(self, c: Conn, catalog: BackupCatalog, tombstones: set[str]) -> None:
        self.c, self.catalog, self.tombstones = c, catalog, tombstones
        self.count = 0
        self.skipped: list[tuple[str, str]] = []

    def deleted(self, where: str, set_id: str) -> bool:
        """Whether the catalog holds `set_id`'s tombstone (then it is skipped)."""
        if set_id not in self.tombstones:
            return False
        self.skipped.append((where, f"{where}: set {set_id} was deleted (the catalog holds its tombstone)"))
        return True

    def register(
        self,
        where: str,
        s: BackupSet,
        archive: Sequence[tuple[str, str]],
        database_row: tuple[object, ...],
        corrections: Callable[[Conn], None] | None = None,
    ) -> None:
        """Inserts one set (and its database's row, unless known) in a savepoint of its
        own, so a set that clashes is skipped without undoing the others."""
        c = self.c
        c.execute("SAVEPOINT one_set")
        try:
            c.execute(
                "INSERT OR IGNORE INTO databases (name, path, kind, archive_dir, block_size, algorithm, "
                "compression, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                database_row,
            )
            if corrections is not None:
                corrections(c)
            self.catalog._insert(c, s, archive, guard=False)
        except catalog_db.INTEGRITY_ERRORS as exc:
            c.execute("ROLLBACK TO one_set")
            self.skipped.append((where, f"{where}: set {s.id} clashes with a set already registered ({exc})"))
            return
        finally:
            c.execute("RELEASE one_set")
        self.count += 1

    def report(self) -> RebuildReport:
        return RebuildReport(self.count, tuple(self.skipped))


def _correct_database(c: Conn, r: manifest.SetRecord, kind: str) -> None:
    """What a manifest's set says of its database beyond the row a first set inserted."""
    if kind != "files" and r.source_kind == kind:
        # A set registered first (an archive whose kind its content did not
        # tell) may have said "files"; a base backup's own record corrects it.
        c.execute("UPDATE databases SET kind = ? WHERE name = ? AND kind = 'files'", (kind, r.database))
    if r.archive_dir:
        c.execute(
            "UPDATE databases SET archive_dir = ? WHERE name = ? AND archive_dir IS NULL",
            (r.archive_dir, r.database),
        )


def _source_kind(m: Manifest) -> str:
    """The kind of database a manifest's set comes from, for a catalog rebuilt from
    manifests (a remote repository's cache on a new host). An ARCHIVE_LOG set says
    "archive"; its content tells: a SQLite WAL capture carries its record, a PostgreSQL
    archive holds only WAL file names. Without this a host whose first manifest is a WAL
    archive (archiving starts before the first base backup) registers a "files" database,
    and archive-get refuses it."""
    from .postgres.wal import is_archive_name

    kind = m.record.source_kind
    if kind in ("sqlite", "postgresql"):
        return kind
    if kind == "archive":
        from .sqlite_wal import WalCapture

        if isinstance(m.wal, WalCapture):
            return "sqlite"
        if m.files and all(is_archive_name(f.path) for f in m.files):
            return "postgresql"
    return "files"


def _log_report(report: RebuildReport) -> None:
    for _, why in report.skipped:
        log.warning("rebuild skipped %s", why)
    log.info("catalog rebuilt from %d manifest(s), %d skipped", report.registered, len(report.skipped))


def rebuild_lost_catalog(repo: store.Repository) -> RebuildReport | None:
    """Rebuilds ``catalog.db`` when it is missing or empty (0 bytes) while ``sets/``
    holds manifests: in a temporary file beside it, renamed into place only once
    complete, so an interrupted rebuild (kill -9) leaves no half-empty catalog that a
    later sweep could take for the truth. Returns None when there was nothing to do.
    Callers hold `locks.catalog_rebuild_lock`."""
    target = repo.catalog_path
    wal, shm = (Path(f"{target}{suffix}") for suffix in ("-wal", "-shm"))
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        size = 0
    # A WAL with frames may still hold the whole catalog: SQLite replays it on open.
    if size or (wal.exists() and wal.stat().st_size) or not any(True for _ in repo.manifests()):
        return None
    log.warning("%s is missing or empty; rebuilding it from the set manifests", target)
    for stale in repo.root.glob(f".{store.CATALOG_FILE}.rebuild-*"):
        stale.unlink(missing_ok=True)
    tmp = repo.root / f".{store.CATALOG_FILE}.rebuild-{os.getpid()}"
    try:
        fresh = BackupCatalog(tmp)
        try:
            with fresh.transaction() as c:
                report = _fill(c, repo, set(), fresh)
            # Out of WAL mode, so the one file holds everything when it is renamed.
            fresh.connection.execute("PRAGMA journal_mode=DELETE")
        finally:
            fresh.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        for leftover in (wal, shm):
            leftover.unlink(missing_ok=True)
        os.replace(tmp, target)
        store.fsync_dir(repo.root)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    _log_report(report)
    return report


def _pieces_on(conn: Conn | catalog_db.PgSnapshot, set_ids: Sequence[str]) -> dict[str, list[BackupPiece]]:
    """The pieces of `set_ids` by set id, 500 ids a query."""
    out: dict[str, list[BackupPiece]] = {}
    for i in range(0, len(set_ids), 500):
        part = list(set_ids[i : i + 500])
        rows = conn.execute(f"SELECT * FROM pieces WHERE set_id IN ({', '.join('?' * len(part))})", part)
        for r in rows:
            out.setdefault(r[1], []).append(BackupPiece(*r))
    return out


def _database(row: Sequence[Any]) -> DatabaseEntry:
    """A databases row, checked: a damaged one names the database and the field."""
    where = f"catalog database {_shown(row[0])}"
    if not all(type(row[i]) is str for i in (0, 1, 2, 5)):
        raise CatalogError(f"{where}: name, path, kind and algorithm must be text")
    if type(row[4]) is not int or not 0 < row[4] <= 1 << 30:
        raise CatalogError(f"{where}: block_size {_shown(row[4])} is not a positive integer")
    return DatabaseEntry(
        name=row[0],
        path=row[1],
        kind=row[2],
        archive_dir=row[3],
        block_size=row[4],
        algorithm=row[5],
        compression=row[6],
        registered_at=from_us(row[7], f"{where}: registered_at"),
        dsn=row[8] if len(row) > 8 else None,
        selection=Selection.from_json(row[9] if len(row) > 9 else None, f"{where}: selection"),
    )


def set_json(s: BackupSet) -> dict[str, Any]:
    """A set as plain JSON data (CLI --json, export_json)."""
    return _set_json(s)


def _set_json(s: BackupSet) -> dict[str, Any]:
    return {
        "id": s.id,
        "database": s.database,
        "backup_type": s.backup_type.value,
        "parent_id": s.parent_id,
        "started_at": s.started_at.isoformat(),
        "finished_at": s.finished_at.isoformat(),
        "status": s.status.value,
        "size": s.size,
        "block_size": s.block_size,
        "algorithm": s.algorithm,
        "compression": s.compression,
        "tags": list(s.tags),
        "bytes_read": s.bytes_read,
        "file_count": s.file_count,
        "pieces": [p.__dict__ for p in s.pieces],
    }


def set_from_manifest(m: Manifest) -> tuple[BackupSet, list[tuple[str, str]]]:
    """The catalog rows a (validated) manifest describes: the set (with pieces) and, for
    an ARCHIVE_LOG set, its (name, digest) archive files."""
    r = m.record
    pieces = tuple(
        BackupPiece(
            id=p.id,
            set_id=r.id,
            path=p.path,
            size=p.size,
            checksum=p.checksum,
            algorithm=p.algorithm,
            block_count=p.block_count,
        )
        for p in m.pieces
    )
    s = BackupSet(
        id=r.id,
        database=r.database,
        backup_type=r.backup_type,
        parent_id=r.parent_id,
        started_at=from_us(r.started_at_us),
        finished_at=from_us(r.finished_at_us),
        status=SetStatus.AVAILABLE,
        size=r.size,
        block_size=r.block_size,
        algorithm=r.algorithm,
        compression=r.compression,
        tags=r.tags,
        bytes_read=r.bytes_read,
        file_count=len(m.files),
        manifest=f"{store.SETS_DIR}/{r.id}/{store.MANIFEST}",
        blockmap=m.blockmap.path,
        blockmap_checksum=m.blockmap.checksum,
        pieces=pieces,
    )
    archive = [(f.path, f.digest) for f in m.files] if s.backup_type is BackupType.ARCHIVE_LOG else []
    return s, archive
