"""A base backup waits for its WAL in our own archive (postgres/archive_wait.py) instead
of pg_backup_stop's once-a-second poll: the files it waits for are the ones PostgreSQL
names, and a WAL file that never arrives fails the backup naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from archive_support import pg_archive_manager
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_support import archived_cluster, rb
from rustybackup import BackupManager, manifest
from rustybackup.errors import BackupError
from rustybackup.postgres import archive, archive_wait, wal


def test_the_files_waited_for_are_the_ones_postgresql_archives() -> None:
    """Against a real server: after a FULL, the archive holds the stop segment and the
    backup history file under exactly the names `needed_files` gives."""
    with archived_cluster("rb-pg-wait-", "pg") as a:
        repo, cluster = a.repo, a.cluster
        cluster.query("CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g")
        rb(repo, "backup", "pg", "--type", "full")
        m = BackupManager(repo)
        (full,) = m.catalog.list_sets("pg")
        info = manifest.load(repo / full.manifest, set_id=full.id).postgresql
        assert info is not None
        needed = archive_wait.needed_files(info.start_lsn, info.stop_lsn, info.timeline, info.wal_segment_size)
        assert all(archive_wait.is_archived(m, "pg", n) for n in needed)
        have = archive.archived(m, "pg")
        assert needed[1] in have and needed[1].endswith(".backup")
        # The history file is the only .backup, and the stop segment the newest segment
        # the backup's switch finished.
        assert [n for n in have if n.endswith(".backup")] == [needed[1]]
        assert needed[0] == max(n for n in have if wal.SEGMENT.fullmatch(n))


@settings(deadline=None, max_examples=200)
@given(
    tli=st.integers(1, 0xFFFF),
    shift=st.integers(20, 30),
    start=st.integers(0, 1 << 40),
    length=st.integers(1, 1 << 32),
)
def test_needed_files_follow_xlog_internal(tli: int, shift: int, start: int, length: int) -> None:
    """XLByteToPrevSeg for the stop, XLByteToSeg and the offset for the history file,
    against the arithmetic written out on the file names' hex fields."""
    size = 1 << shift
    stop = start + length
    last, history = archive_wait.needed_files(start, stop, tli, size)
    per_id = 0x1_0000_0000 // size
    prev = (stop - 1) // size
    assert last == f"{tli:08X}{prev // per_id:08X}{prev % per_id:08X}"
    seg = start // size
    assert history == f"{tli:08X}{seg // per_id:08X}{seg % per_id:08X}.{start % size:08X}.backup"
    assert wal.is_archive_name(last) and wal.is_archive_name(history)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_waiting_returns_once_every_file_arrived() -> None:
    clock = Clock()
    arrives = {"A": 0.3, "B": 1.0}
    asked: list[str] = []

    def archived(name: str) -> bool:
        asked.append(name)
        return clock.now >= arrives[name]

    archive_wait.wait_archived(["A", "B"], archived, "pg", 0x3000000, clock=clock, sleep=clock.sleep)
    assert 1.0 <= clock.now < 1.0 + 2 * archive_wait.POLL_SECONDS
    assert asked[-1] == "B" and asked.count("A") < asked.count("B")  # A is not asked again once there


def test_a_file_that_never_arrives_fails_the_backup_naming_it() -> None:
    clock = Clock()
    with pytest.raises(BackupError, match=r"000000010000000000000003 \(needed up to the backup's stop LSN 0/3000028\)"):
        archive_wait.wait_archived(
            ["000000010000000000000003", "x.backup"],
            lambda n: False,
            "pg",
            0x3000028,
            timeout=5,
            clock=clock,
            sleep=clock.sleep,
        )
    assert 5 <= clock.now < 5 + 2 * archive_wait.POLL_SECONDS


def test_a_spool_file_or_a_sealed_one_counts_as_archived(tmp_path: Path) -> None:
    m = pg_archive_manager(tmp_path)
    src = tmp_path / "000000010000000000000001"
    src.write_bytes(b"w" * 1000)
    assert not archive_wait.is_archived(m, "pg", src.name)
    archive.push(m, "pg", src, seal=False)
    assert archive_wait.is_archived(m, "pg", src.name)
    archive.seal_if_due(m, "pg", force=True)
    assert not (archive.spool_dir(m.repository, "pg") / src.name).exists()
    assert archive_wait.is_archived(m, "pg", src.name)
