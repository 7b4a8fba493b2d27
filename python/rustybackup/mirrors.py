"""Mirrors: one backup, read once, written to several repositories.

A database may name mirror repositories (local directories or ``s3://`` URLs). After a
backup is registered in the primary repository, each mirror receives the set (and any
ancestor it lacks) by `copy.copy_sets`, which FULL-checks every piece before publishing
it there; the source is not read again. A mirror that fails does not fail the backup
nor the other mirrors: its status for that set is recorded ("failed" and why) and the
next backup (or `rustybackup copy`) brings it up to date.

Both tables live in the primary's catalog file, beside the catalog's own.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import BackupCatalog, BackupSet, from_us, to_us
from .errors import CatalogError, ConfigError, RustyBackupError
from .repo_url import RepoUrl, parse_repository

if TYPE_CHECKING:
    from .engine import BackupManager

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS database_mirrors (database TEXT NOT NULL, repository TEXT NOT NULL, "
    "position INTEGER NOT NULL, PRIMARY KEY (database, repository))",
    "CREATE TABLE IF NOT EXISTS set_copies (set_id TEXT NOT NULL, repository TEXT NOT NULL, "
    "status TEXT NOT NULL, detail TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (set_id, repository))",
)
MAX_MIRRORS = 8


class CopyStatus(Enum):
    """A set's state in one mirror repository."""

    COPIED = "copied"
    FAILED = "failed"


@dataclass(frozen=True)
class SetCopy:
    """Where one set stands in one mirror."""

    repository: str
    status: CopyStatus
    detail: str
    at: datetime


def canonical(location: str | Path | RepoUrl) -> str:
    """The one spelling of a repository location stored and compared (URLs normalised,
    local paths absolute)."""
    where = parse_repository(location)
    return str(where)


def _ensure(catalog: BackupCatalog) -> None:
    with catalog.transaction() as c:
        for sql in _SCHEMA:
            c.execute(sql)


def _rows(catalog: BackupCatalog, sql: str, args: Sequence[object]) -> list[tuple[object, ...]]:
    """A read of a mirrors table; a catalog that never had a mirror has no table."""
    try:
        return [tuple(r) for r in catalog._query(sql, args)]
    except CatalogError as exc:
        if isinstance(exc.__cause__, sqlite3.OperationalError) and "no such table" in str(exc.__cause__):
            return []
        raise


def set_mirrors(catalog: BackupCatalog, database: str, repositories: Iterable[str | Path], primary: str) -> list[str]:
    """Replaces the mirror list of `database`. ConfigError names a bad entry (its
    position); the primary repository itself is refused."""
    out: list[str] = []
    for n, r in enumerate(repositories):
        try:
            where = canonical(r)
        except ConfigError as exc:
            raise ConfigError(f"database {database!r}: mirrors[{n}]: {exc}") from None
        if where == primary:
            raise ConfigError(f"database {database!r}: mirrors[{n}] {where} is the repository itself")
        if where in out:
            raise ConfigError(f"database {database!r}: mirrors[{n}] {where} is listed twice")
        out.append(where)
    if len(out) > MAX_MIRRORS:
        raise ConfigError(f"database {database!r}: {len(out)} mirrors (at most {MAX_MIRRORS})")
    _ensure(catalog)
    with catalog.transaction() as c:
        c.execute("DELETE FROM database_mirrors WHERE database = ?", (database,))
        c.executemany("INSERT INTO database_mirrors VALUES (?, ?, ?)", [(database, r, i) for i, r in enumerate(out)])
    return out


def mirrors_of(catalog: BackupCatalog, database: str) -> list[str]:
    rows = _rows(catalog, "SELECT repository FROM database_mirrors WHERE database = ? ORDER BY position", (database,))
    return [str(r[0]) for r in rows]


def record(catalog: BackupCatalog, set_id: str, repository: str, status: CopyStatus, detail: str, at: datetime) -> None:
    _ensure(catalog)
    with catalog.transaction() as c:
        c.execute(
            "INSERT OR REPLACE INTO set_copies VALUES (?, ?, ?, ?, ?)",
            (set_id, repository, status.value, detail, to_us(at)),
        )


def copies(catalog: BackupCatalog, set_ids: Sequence[str]) -> dict[str, list[SetCopy]]:
    """Set id -> its status in each mirror it was sent to."""
    out: dict[str, list[SetCopy]] = {}
    for i in range(0, len(set_ids), 500):
        chunk = list(set_ids[i : i + 500])
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT set_id, repository, status, detail, at FROM set_copies WHERE set_id IN ({marks}) ORDER BY repository"
        for sid, repo, status, detail, at in _rows(catalog, sql, chunk):
            try:
                st = CopyStatus(str(status))
            except ValueError:
                st = CopyStatus.FAILED
            at_us = at if isinstance(at, int) else 0
            out.setdefault(str(sid), []).append(SetCopy(str(repo), st, str(detail), from_us(at_us)))
    return out


def has_copies(catalog: BackupCatalog) -> bool:
    """Whether any set of this catalog was ever sent to a mirror."""
    return bool(_rows(catalog, "SELECT 1 FROM set_copies LIMIT 1", ()))


def mirror_status(
    catalog: BackupCatalog, sets: Iterable[BackupSet], batch: int = 500
) -> Iterator[tuple[BackupSet, list[SetCopy] | None]]:
    """Each of `sets` with its mirror statuses (None when the catalog has no mirror
    status at all), looked up `batch` sets at a time, so a listing stays streamed."""
    if not has_copies(catalog):
        yield from ((s, None) for s in sets)
        return
    chunk: list[BackupSet] = []
    for s in sets:
        chunk.append(s)
        if len(chunk) == batch:
            found = copies(catalog, [c.id for c in chunk])
            yield from ((c, found.get(c.id, [])) for c in chunk)
            chunk = []
    found = copies(catalog, [c.id for c in chunk])
    yield from ((c, found.get(c.id, [])) for c in chunk)


def replicate(manager: BackupManager, backup_set: BackupSet) -> dict[str, SetCopy]:
    """Sends `backup_set` (and the ancestors a mirror lacks) to every mirror of its
    database. Never raises for a mirror's failure: it is recorded and logged."""
    targets = mirrors_of(manager.catalog, backup_set.database)
    if not targets:
        return {}
    from .copy import copy_sets
    from .engine import BackupManager

    chain = [s.id for s in manager.catalog.chain(backup_set.id)] if backup_set.parent_id else [backup_set.id]
    out: dict[str, SetCopy] = {}
    for where in targets:
        now = manager.clock()
        try:
            target = BackupManager(where, clock=manager.clock)
            target.upload_limits = manager.upload_limits
            report = copy_sets(manager, target, set_ids=chain)
        except RustyBackupError as exc:
            status, detail = CopyStatus.FAILED, str(exc)
            failed = dict.fromkeys(chain, detail)
            done: list[str] = []
        except OSError as exc:
            status, detail = (
                CopyStatus.FAILED,
                f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""),
            )
            failed = dict.fromkeys(chain, detail)
            done = []
        else:
            failed = report.failed
            done = report.copied + report.skipped
            status = CopyStatus.FAILED if backup_set.id in failed else CopyStatus.COPIED
            detail = failed.get(backup_set.id, "")
        for sid in done:
            record(manager.catalog, sid, where, CopyStatus.COPIED, "", now)
        for sid, why in failed.items():
            record(manager.catalog, sid, where, CopyStatus.FAILED, why, now)
        if status is CopyStatus.FAILED:
            log.warning("mirror %s did not receive set %s: %s", where, backup_set.id, detail)
        out[where] = SetCopy(where, status, detail, now)
    return out


__all__ = ["CopyStatus", "SetCopy", "copies", "has_copies", "mirror_status", "mirrors_of", "replicate", "set_mirrors"]
