"""The restore_command and recovery_end_command a point-in-time restore writes, run by a
shell in a data directory as PostgreSQL runs them (%f and %p substituted, cwd = the data
directory). No server is needed: what matters is which files they leave and whether
they start an interpreter (the repository here does not exist, so any fallback to
``archive-get`` fails loudly on stderr, which a local answer never does)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rustybackup.postgres.recovery import RECOVERY_END_COMMAND, STAGE_DIR, restore_command

SEGMENT = "000000010000000000000015"


def run(command: str, cwd: Path, f: str, p: str = "pg_wal/RECOVERYXLOG") -> subprocess.CompletedProcess[str]:
    # PostgreSQL substitutes %f and %p textually before handing the line to /bin/sh.
    line = command.replace("%f", f).replace("%p", p)
    return subprocess.run(["/bin/sh", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / STAGE_DIR).mkdir(parents=True)
    (d / STAGE_DIR / SEGMENT).write_bytes(b"wal bytes " * 1000)
    (d / STAGE_DIR / "00000002.history").write_bytes(b"1\t0/15000100\tbefore 2026-11-30\n")
    return d


def command(tmp_path: Path) -> str:
    return restore_command(tmp_path / "no-repository", "main", staged=True)


def test_a_staged_file_is_delivered_and_stays_for_the_second_request(tmp_path: Path, data: Path) -> None:
    for _ in range(2):
        proc = run(command(tmp_path), data, SEGMENT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert (data / "pg_wal/RECOVERYXLOG").read_bytes() == (data / STAGE_DIR / SEGMENT).read_bytes()
        # PostgreSQL renames what it restored into place before it asks again.
        (data / "pg_wal/RECOVERYXLOG").rename(data / "pg_wal" / SEGMENT)
    assert (data / STAGE_DIR / SEGMENT).read_bytes() == b"wal bytes " * 1000


def test_an_existing_destination_is_replaced(tmp_path: Path, data: Path) -> None:
    (data / "pg_wal/RECOVERYHISTORY").write_bytes(b"stale")
    proc = run(command(tmp_path), data, "00000002.history", "pg_wal/RECOVERYHISTORY")
    assert proc.returncode == 0, proc.stderr
    assert (data / "pg_wal/RECOVERYHISTORY").read_bytes().startswith(b"1\t0/15000100")


def test_timeline_one_history_is_absent_without_an_interpreter(tmp_path: Path, data: Path) -> None:
    proc = run(command(tmp_path), data, "00000001.history", "pg_wal/RECOVERYHISTORY")
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert not (data / "pg_wal/RECOVERYHISTORY").exists()


@pytest.mark.parametrize("name", ["00000003.history", "000000010000000000000016", "00000001.historyx"])
def test_anything_else_asks_the_repository(tmp_path: Path, data: Path, name: str) -> None:
    proc = run(command(tmp_path), data, name)
    assert proc.returncode != 0
    assert "no-repository" in proc.stderr, proc.stderr


def test_the_recovery_end_command_removes_the_staging_directory(data: Path) -> None:
    (data / "pg_wal" / SEGMENT).hardlink_to(data / STAGE_DIR / SEGMENT)
    proc = subprocess.run(
        ["/bin/sh", "-c", RECOVERY_END_COMMAND], cwd=data, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert not (data / STAGE_DIR).exists()
    # What the server restored into pg_wal/ is its own and stays.
    assert (data / "pg_wal" / SEGMENT).read_bytes() == b"wal bytes " * 1000
