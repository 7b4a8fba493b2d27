"""Questions across every repository registered in a shared catalog (RMAN's recovery
catalog over many targets): the repositories, one report of them all, and a recovery
path wherever a database lives. Each repository's rows are read by catalog.py's one
reader (a `BackupCatalog` bound to that repository's schema); this module only walks
the list of repositories in the ``rustybackup`` schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import catalog_pg
from .catalog import BackupCatalog, BackupSet
from .catalog_db import PgConnection
from .errors import CatalogError

__all__ = ["SharedCatalog"]


class SharedCatalog:
    """A PostgreSQL catalog as a whole (every repository in it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: PgConnection = catalog_pg.connect_global(url)

    def close(self) -> None:
        self._conn.close()

    def repositories(self) -> list[catalog_pg.RepositoryEntry]:
        return catalog_pg.repositories(self._conn)

    def _open(self, entry: catalog_pg.RepositoryEntry) -> BackupCatalog:
        path = entry.location.removeprefix("file://")
        return BackupCatalog(path, url=self.url)

    def report(self) -> dict[str, Any]:
        """Every repository's `BackupCatalog.report`, keyed by location, with totals."""
        out: dict[str, Any] = {"repositories": {}, "total_sets": 0, "total_size": 0}
        for entry in self.repositories():
            cat = self._open(entry)
            try:
                rep = cat.report()
            finally:
                cat.close()
            rep["id"], rep["host"] = entry.id, entry.host
            out["repositories"][entry.location] = rep
            out["total_sets"] += rep["total_sets"]
            out["total_size"] += rep["total_size"]
        return out

    def find_database(self, database: str) -> list[catalog_pg.RepositoryEntry]:
        """The repositories where `database` is registered."""
        found = []
        for entry in self.repositories():
            rows = self._conn.execute(
                f'SELECT 1 FROM "{entry.schema}".databases WHERE name = ?', (database,)
            ).fetchall()
            if rows:
                found.append(entry)
        return found

    def find_recovery_path(
        self, database: str, until: datetime | None = None, *, repository: str | None = None
    ) -> list[BackupSet]:
        """`BackupCatalog.find_recovery_path` in whichever repository holds `database`
        (or in `repository`, a path or URL, when several do)."""
        if repository is not None:
            location = catalog_pg.location_of(repository)
            entries = [e for e in self.repositories() if e.location == location]
            if not entries:
                raise CatalogError(f"shared catalog {self._conn.where}: no repository {location} is registered")
        else:
            entries = self.find_database(database)
            if not entries:
                raise CatalogError(f"shared catalog {self._conn.where}: no repository has a database {database!r}")
            if len(entries) > 1:
                where = ", ".join(e.location for e in entries)
                raise CatalogError(
                    f"database {database!r} is registered in {len(entries)} repositories ({where}); name the repository"
                )
        cat = self._open(entries[0])
        try:
            return cat.find_recovery_path(database, until)
        finally:
            cat.close()
