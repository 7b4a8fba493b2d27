"""What verification keeps in ``catalog.db``: when each piece and block map was last
verified, at which level and with which outcome (RMAN keeps the same in its catalog's
validation records).

The ``sets``/``pieces`` rows come from the catalog's one reader (``BackupCatalog.set_rows``
and ``piece_rows``, the tolerant form: a verifier must describe a damaged catalog row, an
unknown status, a NULL size, a broken parent link, as a finding, not die on it). Reads
take no write lock; only `record` and the status marks write, each one short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from .catalog import BackupCatalog, PieceRow, SetRow, from_us, to_us
from .catalog_db import has_table
from .enums import VerificationType

_SCHEMA = """
CREATE TABLE IF NOT EXISTS piece_verifications (
    item_id TEXT PRIMARY KEY,      -- pieces.id, or '<set-id>/blockmap'
    set_id TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'piece' | 'blockmap'
    verified_at INTEGER NOT NULL,  -- microseconds since the epoch, from the manager's clock
    level TEXT NOT NULL,           -- VerificationType value
    outcome TEXT NOT NULL,         -- ok | missing | damaged
    bytes_read INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS piece_verifications_set ON piece_verifications(set_id);
"""

# How deep each level reads: a coverage question "verified at least STANDARD since..."
# accepts deeper levels too. RESTORE_TEST reads every block a restore needs.
LEVEL_DEPTH = {
    VerificationType.QUICK: 0,
    VerificationType.STANDARD: 1,
    VerificationType.FULL: 2,
    VerificationType.RESTORE_TEST: 2,
}


class VerificationRecords:
    """The verification table and the catalog rows verification reads, over the
    catalog's own connection (one writer lock per repository process)."""

    def __init__(self, catalog: BackupCatalog) -> None:
        self.catalog = catalog
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        # Only a repository that never had a verification takes the write lock here:
        # a verifier must not queue behind (or hold up) a backup registering its set.
        with self.catalog._lock:
            if has_table(self.catalog.connection, "piece_verifications"):
                return
        with self.catalog.transaction() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """A plain read (SQLite's read transaction of one statement): in WAL mode it
        never blocks a writer and no writer blocks it."""
        return [tuple(r) for r in self.catalog._query(sql, args)]

    # --- catalog rows ----------------------------------------------------------------

    def set_rows(self, database: str | None = None) -> list[SetRow]:
        return self.catalog.set_rows(database)

    def set_row(self, set_id: str) -> SetRow | None:
        return self.catalog.set_row(set_id)

    def piece_rows(self, set_ids: Sequence[str]) -> dict[str, list[PieceRow]]:
        return self.catalog.piece_rows(set_ids)

    def database_names(self) -> set[str]:
        return self.catalog.database_names()

    def set_statuses(self, statuses: dict[str, str]) -> list[str]:
        """Writes statuses through the catalog in one transaction; returns the ids the
        catalog no longer has."""
        from .enums import SetStatus

        return self.catalog.mark_statuses({sid: SetStatus(status) for sid, status in statuses.items()})

    # --- verification records --------------------------------------------------------

    def last_verified(self, item_ids: Iterable[str]) -> dict[str, tuple[int, str, str]]:
        """item id -> (verified_at µs, level, outcome) for the ids that have a record."""
        ids = list(item_ids)
        out: dict[str, tuple[int, str, str]] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" * len(part))
            for r in self._query(
                f"SELECT item_id, verified_at, level, outcome FROM piece_verifications WHERE item_id IN ({marks})",
                part,
            ):
                out[str(r[0])] = (int(str(r[1])), str(r[2]), str(r[3]))
        return out

    def record(self, rows: Sequence[tuple[str, str, str, datetime, VerificationType, str, int]]) -> None:
        """Upserts (item_id, set_id, kind, when, level, outcome, bytes_read) in one short
        write transaction, the only one a verification takes besides status marks; the
        records of sets deleted since go in the same transaction."""
        if not rows:
            return
        with self.catalog.transaction() as c:
            c.execute("DELETE FROM piece_verifications WHERE set_id NOT IN (SELECT id FROM sets)")
            c.executemany(
                "INSERT INTO piece_verifications (item_id, set_id, kind, verified_at, level, outcome, bytes_read) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET set_id = excluded.set_id, "
                "kind = excluded.kind, verified_at = excluded.verified_at, level = excluded.level, "
                "outcome = excluded.outcome, bytes_read = excluded.bytes_read",
                [(i, s, k, to_us(w), VerificationType(lv).value, o, b) for i, s, k, w, lv, o, b in rows],
            )

    def forget_deleted(self) -> int:
        """Drops records of sets the catalog no longer has (retention deleted them)."""
        with self.catalog.transaction() as c:
            cur = c.execute("DELETE FROM piece_verifications WHERE set_id NOT IN (SELECT id FROM sets)")
            return int(cur.rowcount)


def when(us: int | None) -> datetime | None:
    """The aware datetime of a stored timestamp."""
    return None if us is None else from_us(us)


__all__ = ["LEVEL_DEPTH", "PieceRow", "SetRow", "VerificationRecords", "when"]
