"""What the archive-push/archive-get tests share that needs no PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

from rustybackup import BackupManager


def pg_archive_manager(tmp_path: Path) -> BackupManager:
    """A repository at ``tmp_path/repo`` with one PostgreSQL database ``pg`` over an
    empty ``tmp_path/pgdata`` and a DSN that reaches no server: enough for archiving,
    which never connects. Test modules take it as their ``manager`` fixture with
    ``manager = pytest.fixture(pg_archive_manager)``."""
    m = BackupManager(tmp_path / "repo")
    (tmp_path / "pgdata").mkdir()
    m.register_database("pg", tmp_path / "pgdata", kind="postgresql", dsn="host=/nonexistent")
    return m
