"""``rustybackup capture``: a foreground capturer that SIGTERM stops cleanly (exit 0,
after the step in progress), and ``--once`` for one step."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from rustybackup import manifest, store
from rustybackup.cli import cli
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType
from rustybackup.sqlite_wal import WalCapture


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    return conn


def test_sigterm_stops_after_the_current_step_with_exit_zero(tmp_path: Path) -> None:
    conn = _db(tmp_path / "a.db")
    repo = tmp_path / "repo"
    BackupManager(repo).register_database("a", tmp_path / "a.db", kind="sqlite")
    conn.execute("INSERT INTO t VALUES (0)")
    BackupManager(repo).backup("a", BackupType.FULL)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rustybackup",
            "--repo",
            str(repo),
            "capture",
            "a",
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not BackupManager(repo).catalog.list_sets("a", BackupType.ARCHIVE_LOG):
            conn.execute("INSERT INTO t VALUES (1)")
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no capture set appeared"
            time.sleep(0.05)
        conn.execute("INSERT INTO t VALUES (2)")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "captured into set" in out and "stopped after" in out
    manager = BackupManager(repo)
    sets = manager.catalog.list_sets("a", BackupType.ARCHIVE_LOG)
    assert sets
    # Nothing left half-done: no staging leftovers, and the last commit was captured.
    assert not any((repo / "staging").iterdir())
    records = [manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST).wal for s in sets]
    assert all(isinstance(r, WalCapture) for r in records)
    manager.restore("a", tmp_path / "out")
    check = sqlite3.connect(tmp_path / "out" / "a.db")
    assert check.execute("SELECT max(x) FROM t").fetchone()[0] == 2
    check.close()
    conn.close()


def test_once_runs_one_step_and_says_when_nothing_is_new(tmp_path: Path) -> None:
    conn = _db(tmp_path / "a.db")
    repo = tmp_path / "repo"
    BackupManager(repo).register_database("a", tmp_path / "a.db", kind="sqlite")
    runner = CliRunner()
    first = runner.invoke(cli, ["--repo", str(repo), "capture", "a", "--once"])
    assert first.exit_code == 0, first.output
    assert "captured into set" in first.output
    again = runner.invoke(cli, ["--repo", str(repo), "capture", "a", "--once"])
    assert again.exit_code == 0 and "nothing new in the WAL" in again.output
    conn.close()


def test_capture_of_a_files_source_is_a_usage_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (tmp_path / "src").mkdir()
    BackupManager(repo).register_database("f", tmp_path / "src")
    result = CliRunner().invoke(cli, ["--repo", str(repo), "capture", "f", "--once"])
    assert result.exit_code == 2
    assert "WAL capture is for sqlite databases" in result.output


def test_a_quiet_database_gets_no_empty_capture_sets(tmp_path: Path) -> None:
    from rustybackup.capture import something_new

    conn = _db(tmp_path / "a.db")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    manager = BackupManager(tmp_path / "repo")
    manager.register_database("a", tmp_path / "a.db", kind="sqlite")
    for i in range(50):
        conn.execute("INSERT INTO t VALUES (?)", (i,))
    manager.backup("a", BackupType.ARCHIVE_LOG)
    assert not something_new(manager, "a")
    # The step's checkpoint copied every frame: the next write restarts the WAL, whose
    # file keeps the old generation's frames after the new one's.
    conn.execute("INSERT INTO t VALUES (50)")
    assert something_new(manager, "a")
    manager.backup("a", BackupType.ARCHIVE_LOG)
    assert not something_new(manager, "a")
    conn.execute("INSERT INTO t VALUES (51)")
    assert something_new(manager, "a")
    conn.close()
