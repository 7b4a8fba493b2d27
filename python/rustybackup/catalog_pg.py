"""The shared catalog on PostgreSQL: one database, many repositories and hosts.

Each repository registered in the shared catalog gets a schema of its own
(``rb_<id>``) whose tables have the shapes of ``catalog.db``'s, so catalog.py's one
row reader serves both (through catalog_db.PgConnection, which sets the connection's
``search_path`` to that schema). The ``rustybackup`` schema lists the repositories
(id, location, schema, the host that last opened it) and the nodes (nodes.py); a
question across all repositories (`report_all`, `find_database`) walks that list.

Schemas carry a version: `MIGRATIONS` (per repository) and `GLOBAL_MIGRATIONS` are
applied in order on open, in one transaction under an advisory lock, so two nodes
opening a fresh catalog at once migrate it once.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .catalog_db import DbError, PgConnection
from .errors import CatalogError
from .timestamps import to_us

__all__ = [
    "MIGRATIONS",
    "GLOBAL_MIGRATIONS",
    "RepositoryEntry",
    "connect_global",
    "location_of",
    "open_repository",
    "repositories",
    "table_shape",
]

GLOBAL_SCHEMA = "rustybackup"

# Advisory lock keys (any constants unique to this program).
_MIGRATION_LOCK = 0x72627363  # "rbsc"

GLOBAL_MIGRATIONS: tuple[str, ...] = (
    # 1: the repositories registered into this catalog, and the scheduler nodes.
    """
    CREATE TABLE rustybackup.repositories (
        id TEXT PRIMARY KEY, location TEXT NOT NULL UNIQUE, schema_name TEXT NOT NULL UNIQUE,
        host TEXT NOT NULL, registered_at BIGINT NOT NULL, last_seen BIGINT NOT NULL);
    CREATE TABLE rustybackup.nodes (
        name TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, labels TEXT NOT NULL,
        repository TEXT, started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL,
        lease_until BIGINT NOT NULL, max_concurrent INTEGER NOT NULL, seen_clock BIGINT);
    """,
    # 2: what each node runs, as of its last heartbeat (its claims in progress).
    "ALTER TABLE rustybackup.nodes ADD COLUMN running TEXT NOT NULL DEFAULT '[]'",
)

MIGRATIONS: tuple[str, ...] = (
    # 1: the tables of catalog.db (catalog.py, verify_records.py, history.py), with
    # BIGINT for microsecond instants and sizes and a rowid for catalog.py's
    # "in insertion order" tie-breaks.
    """
    CREATE TABLE databases (
        name TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, archive_dir TEXT,
        block_size BIGINT NOT NULL, algorithm TEXT NOT NULL, compression TEXT,
        registered_at BIGINT NOT NULL, dsn TEXT);
    CREATE TABLE sets (
        id TEXT PRIMARY KEY, database TEXT NOT NULL, backup_type TEXT NOT NULL, parent_id TEXT,
        started_at BIGINT NOT NULL, finished_at BIGINT NOT NULL, status TEXT NOT NULL,
        size BIGINT NOT NULL, block_size BIGINT NOT NULL, algorithm TEXT NOT NULL,
        compression TEXT, tags TEXT NOT NULL, bytes_read BIGINT NOT NULL,
        file_count BIGINT NOT NULL, manifest TEXT NOT NULL, blockmap TEXT NOT NULL,
        blockmap_checksum TEXT NOT NULL, rowid BIGSERIAL NOT NULL);
    CREATE INDEX sets_chain ON sets (database, finished_at, started_at, id, backup_type, parent_id, status);
    CREATE INDEX sets_by_type ON sets (database, backup_type, finished_at);
    CREATE INDEX sets_by_parent ON sets (parent_id);
    CREATE TABLE pieces (
        id TEXT PRIMARY KEY, set_id TEXT NOT NULL REFERENCES sets(id) ON DELETE CASCADE,
        path TEXT NOT NULL, size BIGINT NOT NULL, checksum TEXT NOT NULL,
        algorithm TEXT NOT NULL, block_count BIGINT NOT NULL);
    CREATE INDEX pieces_by_set ON pieces (set_id);
    CREATE TABLE tombstones (id TEXT PRIMARY KEY, deleted_at BIGINT NOT NULL);
    CREATE TABLE archive_files (
        database TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL, set_id TEXT NOT NULL,
        PRIMARY KEY (database, name));
    CREATE TABLE piece_verifications (
        item_id TEXT PRIMARY KEY, set_id TEXT NOT NULL, kind TEXT NOT NULL,
        verified_at BIGINT NOT NULL, level TEXT NOT NULL, outcome TEXT NOT NULL,
        bytes_read BIGINT NOT NULL);
    CREATE INDEX piece_verifications_set ON piece_verifications (set_id);
    """,
    # 2: the scheduler's shared state (claims.py): jobs and windows as one document with
    # a version, occurrence claims with a fencing epoch, and per-round verification
    # piece claims.
    """
    CREATE TABLE sched_config (
        id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL, document TEXT NOT NULL);
    CREATE TABLE sched_executions (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL, scheduled_for BIGINT NOT NULL,
        started_at BIGINT, finished_at BIGINT, status TEXT NOT NULL, backup_set_id TEXT,
        error TEXT, bytes_read BIGINT, bytes_written BIGINT, owner TEXT, lease_until BIGINT,
        node TEXT, epoch BIGINT NOT NULL DEFAULT 1, takeover BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (job_id, scheduled_for));
    CREATE INDEX sched_executions_status ON sched_executions (status, job_id);
    CREATE INDEX sched_executions_time ON sched_executions (scheduled_for);
    CREATE TABLE verify_round_claims (
        round TEXT NOT NULL, item_id TEXT NOT NULL, node TEXT NOT NULL, claimed_at BIGINT NOT NULL,
        PRIMARY KEY (round, item_id));
    """,
    # 3: mirrors.py's tables (a mirror list per database, each set's state in each
    # mirror), so a read never meets a missing table.
    """
    CREATE TABLE database_mirrors (
        database TEXT NOT NULL, repository TEXT NOT NULL, position INTEGER NOT NULL,
        PRIMARY KEY (database, repository));
    CREATE TABLE set_copies (
        set_id TEXT NOT NULL, repository TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL,
        at BIGINT NOT NULL, PRIMARY KEY (set_id, repository));
    """,
    # 4: a file tree's selection rules (selection.py, JSON; NULL: none).
    "ALTER TABLE databases ADD COLUMN selection TEXT",
    # 5: the repository a run wrote to, when its job targets another (job_targets.py).
    "ALTER TABLE sched_executions ADD COLUMN repository TEXT",
)

# Key and column order of each table INSERT OR REPLACE touches (catalog_db.translate).
_SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "databases": (
        ("name",),
        (
            "name",
            "path",
            "kind",
            "archive_dir",
            "block_size",
            "algorithm",
            "compression",
            "registered_at",
            "dsn",
            "selection",
        ),
    ),
    "tombstones": (("id",), ("id", "deleted_at")),
    "set_copies": (("set_id", "repository"), ("set_id", "repository", "status", "detail", "at")),
    "archive_files": (("database", "name"), ("database", "name", "digest", "set_id")),
    "piece_verifications": (
        ("item_id",),
        ("item_id", "set_id", "kind", "verified_at", "level", "outcome", "bytes_read"),
    ),
}


def table_shape(table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        return _SHAPES[table]
    except KeyError:
        raise CatalogError(
            f"internal: INSERT OR REPLACE into {table!r}, whose key the shared catalog does not know"
        ) from None


@dataclass(frozen=True)
class RepositoryEntry:
    """A repository registered in the shared catalog."""

    id: str
    location: str
    schema: str
    host: str
    registered_at: int
    last_seen: int


def location_of(repository: str | os.PathLike[str]) -> str:
    """How the shared catalog names a repository: a URL as given, a directory as its
    absolute path (``file://`` + path)."""
    text = os.fspath(repository)
    if "://" in text:
        return text
    return "file://" + str(Path(text).resolve())


def redacted(url: str) -> str:
    """`url` without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


def connect_global(url: str) -> PgConnection:
    """A connection to the catalog's ``rustybackup`` schema, migrated."""
    conn = PgConnection(url, schema=GLOBAL_SCHEMA, tables=table_shape, where=redacted(url))
    _migrate(conn, GLOBAL_SCHEMA, GLOBAL_MIGRATIONS)
    return conn


def open_repository(url: str, repository: str | os.PathLike[str]) -> tuple[PgConnection, RepositoryEntry]:
    """The connection for `repository`'s rows: registered on first use, its schema
    created and migrated, the connection's ``search_path`` set to it."""
    conn = connect_global(url)
    try:
        entry = _register(conn, location_of(repository))
        _migrate(conn, entry.schema, MIGRATIONS)
        conn.set_schema(entry.schema)
    except BaseException:
        conn.close()
        raise
    return conn, entry


def repositories(conn: PgConnection) -> list[RepositoryEntry]:
    rows = conn.execute(
        "SELECT id, location, schema_name, host, registered_at, last_seen FROM rustybackup.repositories ORDER BY location"
    ).fetchall()
    return [RepositoryEntry(*r) for r in rows]


def _register(conn: PgConnection, location: str) -> RepositoryEntry:
    now = to_us(datetime.now(UTC))
    rid = hashlib.blake2b(location.encode(), digest_size=8).hexdigest()
    conn.execute(
        "INSERT INTO rustybackup.repositories (id, location, schema_name, host, registered_at, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (location) DO UPDATE SET host = EXCLUDED.host, "
        "last_seen = EXCLUDED.last_seen",
        (rid, location, f"rb_{rid}", socket.gethostname(), now, now),
    )
    row = conn.execute(
        "SELECT id, location, schema_name, host, registered_at, last_seen FROM rustybackup.repositories "
        "WHERE location = ?",
        (location,),
    ).fetchone()
    if row is None:
        raise CatalogError(f"shared catalog {conn.where}: repository {location} did not register")
    return RepositoryEntry(*row)


def _migrate(conn: PgConnection, schema: str, migrations: tuple[str, ...]) -> None:
    """Applies the migrations `schema` lacks, in one transaction under an advisory lock
    (another node may be migrating the same catalog at the same moment)."""
    raw = conn.raw
    try:
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            raw.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            raw.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".catalog_meta (version INTEGER NOT NULL)')
            row = raw.execute(f'SELECT version FROM "{schema}".catalog_meta').fetchone()
            version = 0 if row is None else int(row[0])
            if version > len(migrations):
                raise CatalogError(
                    f"shared catalog {conn.where}: schema {schema} is at version {version}, newer than this "
                    f"rustybackup knows ({len(migrations)}); use a matching release"
                )
            if version == len(migrations):
                return
            raw.execute(f'SET LOCAL search_path TO "{schema}"')
            for sql in migrations[version:]:
                raw.execute(sql)
            if row is None:
                raw.execute(f'INSERT INTO "{schema}".catalog_meta VALUES (%s)', (len(migrations),))
            else:
                raw.execute(f'UPDATE "{schema}".catalog_meta SET version = %s', (len(migrations),))
    except conn.psycopg.Error as exc:
        raise DbError(f"shared catalog {conn.where}: cannot migrate schema {schema}: {exc}") from exc
