"""Moving a repository's catalog between its SQLite file (``REPO/catalog.db``) and a
shared PostgreSQL catalog: `import_to_shared` (SQLite -> PostgreSQL) and
`export_from_shared` (PostgreSQL -> SQLite), used by ``rustybackup catalog import|export``.

Every table of the catalog moves (sets, pieces, databases, tombstones, archive files,
verification records, mirrors, run history), and the jobs and windows (the scheduler's
JSON file <-> the shared catalog's ``sched_config``). Rows are upserted on their keys in
one transaction of the target, so running a move twice changes nothing; before that
transaction commits, every source row is read back from the target and compared, and a
difference rolls it back (`MoveReport` gives the counts it checked).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog_db, store
from .catalog import BackupCatalog
from .catalog_db import Conn
from .catalog_pg import location_of, redacted
from .config import CONFIG_NAME, encode_config, load_config, parse_config, save_config
from .errors import CatalogError

__all__ = ["MoveReport", "export_from_shared", "import_to_shared"]

# Tables in the order their rows must go in (pieces after their sets), with their keys.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("databases", ("name",)),
    ("sets", ("id",)),
    ("pieces", ("id",)),
    ("tombstones", ("id",)),
    ("archive_files", ("database", "name")),
    ("piece_verifications", ("item_id",)),
    ("database_mirrors", ("database", "repository")),
    ("set_copies", ("set_id", "repository")),
    ("sched_executions", ("id",)),
)
# Columns one side has and the other does not carry over (PostgreSQL's insertion order).
_LOCAL_ONLY = {"rowid"}


@dataclass
class MoveReport:
    """Rows per table in the source, and found again in the target; whether jobs moved."""

    source: str
    target: str
    tables: dict[str, int] = field(default_factory=dict)
    jobs: int = 0

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "target": self.target, "rows": self.tables, "jobs": self.jobs}


def _columns(conn: Conn, table: str) -> list[str]:
    if isinstance(conn, catalog_db.PgConnection):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?"
            " ORDER BY ordinal_position",
            (conn.schema, table),
        ).fetchall()
    else:
        rows = [(r[1],) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    return [str(r[0]) for r in rows if r[0] not in _LOCAL_ONLY]


def _ensure_sqlite_tables(catalog: BackupCatalog) -> None:
    """The tables other modules create on first use, made now so rows can go in."""
    from . import mirrors
    from .history import History
    from .verify_records import VerificationRecords

    VerificationRecords(catalog)
    History(catalog.path).close()
    mirrors._ensure(catalog)


def _copy(src: BackupCatalog, dst: BackupCatalog, report: MoveReport) -> None:
    s_conn, d_conn = src.connection, dst.connection
    with dst.transaction() as d:
        for table, key in TABLES:
            s_cols = _columns(s_conn, table)
            if not s_cols:
                continue  # the source never had this table (no verification yet, say)
            d_cols = set(_columns(d_conn, table))
            cols = [c for c in s_cols if c in d_cols]
            listed = ", ".join(cols)
            order = "started_at, rowid" if table == "sets" else ", ".join(key)
            with src._lock:
                rows = [tuple(r) for r in s_conn.execute(f"SELECT {listed} FROM {table} ORDER BY {order}").fetchall()]
            updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
            sql = (
                f"INSERT INTO {table} ({listed}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT ({', '.join(key)}) " + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")
            )
            try:
                for i in range(0, len(rows), 1000):
                    d.executemany(sql, rows[i : i + 1000])
            except catalog_db.DB_ERRORS as exc:
                raise CatalogError(f"catalog move {report.source} -> {report.target}: table {table}: {exc}") from exc
            back = {tuple(r) for r in d.execute(f"SELECT {listed} FROM {table}").fetchall()}
            missing = [r for r in rows if r not in back]
            if missing:
                raise CatalogError(
                    f"catalog move {report.source} -> {report.target}: table {table}: {len(missing)} of {len(rows)} "
                    f"rows differ in the target after the copy (first: {missing[0][:3]}); nothing was changed"
                )
            report.tables[table] = len(rows)


def import_to_shared(repository: str | os.PathLike[str], url: str) -> MoveReport:
    """Copies the repository's ``catalog.db`` (and its scheduler file's jobs) into the
    shared catalog `url`."""
    repo = Path(repository)
    if not (repo / store.CATALOG_FILE).is_file():
        raise CatalogError(f"{repo}: no {store.CATALOG_FILE} to import")
    src = BackupCatalog(repo)
    dst = BackupCatalog(repo, url=url)
    report = MoveReport(str(src.path), f"{redacted(url)} {location_of(repo)}")
    try:
        _copy(src, dst, report)
        config_file = repo / CONFIG_NAME
        if config_file.exists():
            config = load_config(config_file)
            document = encode_config(config).decode()
            dst.connection.execute(
                "INSERT INTO sched_config (id, version, document) VALUES (1, 1, ?) ON CONFLICT (id) DO UPDATE SET "
                "version = sched_config.version + 1, document = excluded.document "
                "WHERE sched_config.document <> excluded.document",
                (document,),
            )
            report.jobs = len(config.jobs)
    finally:
        src.close()
        dst.close()
    return report


def export_from_shared(repository: str | os.PathLike[str], url: str) -> MoveReport:
    """Copies the repository's rows (and jobs) from the shared catalog `url` into its
    ``catalog.db`` (and scheduler file)."""
    repo = Path(repository)
    store.Repository(repo, create=False)
    src = BackupCatalog(repo, url=url)
    try:
        dst = BackupCatalog(repo)
    except BaseException:
        src.close()
        raise
    report = MoveReport(f"{redacted(url)} {location_of(repo)}", str(dst.path))
    try:
        _ensure_sqlite_tables(dst)
        _copy(src, dst, report)
        row = src.connection.execute("SELECT document FROM sched_config WHERE id = 1").fetchone()
        if row is not None:
            config = parse_config(str(row[0]), Path(f"{redacted(url)} {location_of(repo)} sched_config"))
            save_config(repo / CONFIG_NAME, config)
            report.jobs = len(config.jobs)
    except sqlite3.Error as exc:
        raise CatalogError(f"{dst.path}: {exc}") from exc
    finally:
        src.close()
        dst.close()
    return report
