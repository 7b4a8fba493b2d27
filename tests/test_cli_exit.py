"""A command closes what it opens: the ``rustybackup`` process skips the cyclic
collections of the interpreter's exit (``gc.freeze`` in rustybackup/__main__.py), so a
catalog connection left to them would never be closed and SQLite's WAL would stay
beside catalog.db. `BackupManager` closes explicitly, also as a context manager."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rustybackup import BackupManager


def _cli(repo: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "rustybackup", "--repo", str(repo), *args],
        check=True,
        capture_output=True,
        env={**os.environ, "RUSTYBACKUP_REPO": ""},
        timeout=120,
    )


def test_manager_closes_its_catalog(tmp_path: Path) -> None:
    with BackupManager(tmp_path / "repo") as m:
        conn = m.catalog.connection
        assert (tmp_path / "repo" / "catalog.db-wal").exists()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    # SQLite checkpoints and removes the WAL when its last connection closes.
    assert not (tmp_path / "repo" / "catalog.db-wal").exists()
    m.close()  # twice is harmless


def test_commands_close_their_catalog(tmp_path: Path) -> None:
    src, repo = tmp_path / "src", tmp_path / "repo"
    src.mkdir()
    (src / "a").write_bytes(b"one file\n" * 100)
    for args in (
        ("init",),
        ("db", "add", "t", "--path", str(src)),
        ("backup", "t", "--type", "full"),
        ("backup", "t", "--type", "incremental"),
        ("list", "t"),
        ("verify", "t"),
        ("restore", "t", "--to", str(tmp_path / "out")),
    ):
        _cli(repo, *args)
        assert not (repo / "catalog.db-wal").exists(), f"`{' '.join(args)}` left catalog.db-wal"
    assert (tmp_path / "out" / "a").read_bytes() == (src / "a").read_bytes()


def test_importing_the_package_freezes_nothing() -> None:
    # Only the command's own process freezes, at its exit; a host that imports the
    # package (or runs the CLI in process) keeps its collector as it was.
    assert gc.get_freeze_count() == 0
