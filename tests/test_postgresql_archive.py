"""archive-push / archive-get without a server: the spool, its sealing into grouped
ARCHIVE_LOG sets, idempotence, refusal of changed content, concurrency and what a crash
between the steps leaves; and the WAL naming rules against independent oracles."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from archive_support import pg_archive_manager
from hypothesis import given
from hypothesis import strategies as st
from rustybackup import BackupManager
from rustybackup.enums import BackupType
from rustybackup.errors import ConfigError
from rustybackup.postgres import archive, wal


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BackupManager:
    monkeypatch.setenv(archive.GROUP_ENV, "4")
    return pg_archive_manager(tmp_path)


def _segment(d: Path, n: int, fill: bytes = b"") -> Path:
    name = wal.segment_name(1, n, 1 << 20)
    p = d / name
    p.write_bytes((fill or n.to_bytes(4, "big")) * 1000)
    return p


def test_pushes_are_sealed_in_groups_and_every_file_comes_back(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    paths = [_segment(src, n) for n in range(1, 11)]
    for p in paths:
        archive.push(manager, "pg", p)
    sets = manager.catalog.list_sets("pg", BackupType.ARCHIVE_LOG)
    assert len(sets) == 2  # 10 files in groups of 4; 2 still wait in the spool
    spool = archive.spool_dir(manager.repository, "pg")
    assert sorted(e.name for e in spool.iterdir() if not e.name.startswith(".")) == [p.name for p in paths[8:]]
    out = tmp_path / "out"
    out.mkdir()
    for p in paths:
        archive.get(manager, "pg", p.name, out / "RECOVERYXLOG")
        assert (out / "RECOVERYXLOG").read_bytes() == p.read_bytes()
    assert archive.seal_if_due(manager, "pg", force=True) is not None
    assert len(manager.catalog.list_sets("pg", BackupType.ARCHIVE_LOG)) == 3
    assert set(archive.archived(manager, "pg")) == {p.name for p in paths}


def test_the_same_file_again_succeeds_and_other_content_is_refused(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    p = _segment(src, 1)
    assert not archive.push(manager, "pg", p).already
    assert archive.push(manager, "pg", p).already
    archive.seal_if_due(manager, "pg", force=True)
    assert archive.push(manager, "pg", p).already  # now from a sealed set
    other = tmp_path / "other"
    other.mkdir()
    q = _segment(other, 1, fill=b"XXXX")
    with pytest.raises(archive.ArchiveMismatch, match=p.name):
        archive.push(manager, "pg", q)


def test_get_of_a_missing_file_raises_not_archived_and_writes_nothing(manager: BackupManager, tmp_path: Path) -> None:
    with pytest.raises(archive.NotArchived):
        archive.get(manager, "pg", "000000010000000000000042", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="not a WAL file name"):
        archive.get(manager, "pg", "../etc/passwd", tmp_path / "x")


def test_parallel_pushes_of_one_name_store_it_once(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    p = _segment(src, 7)
    results: list[object] = []

    def push() -> None:
        try:
            results.append(archive.push(manager, "pg", p, seal=False).already)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)

    threads = [threading.Thread(target=push) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["False"] + ["True"] * 5


def test_a_crash_between_registering_and_purging_leaves_nothing_wrong(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    p = _segment(src, 3)
    archive.push(manager, "pg", p, seal=False)
    spool = archive.spool_dir(manager.repository, "pg")
    keep = (spool / p.name).read_bytes()
    archive.seal_if_due(manager, "pg", force=True)
    # As if the process died after the set was registered, before the spool copy went.
    (spool / p.name).write_bytes(keep)
    (spool / f".{p.name}.tmp-1-deadbeef").write_bytes(b"half")
    assert archive.push(manager, "pg", p).already
    assert archive.purge_sealed(manager, "pg") == 1
    assert archive.seal_if_due(manager, "pg", force=True) is None  # nothing new to seal
    out = tmp_path / "o"
    archive.get(manager, "pg", p.name, out)
    assert out.read_bytes() == p.read_bytes()


def test_names_that_are_not_wal_files_are_refused(manager: BackupManager, tmp_path: Path) -> None:
    bad = tmp_path / "notwal"
    bad.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a WAL file name"):
        archive.push(manager, "pg", bad)
    for good in ("00000002.history", "000000010000000000000003.00000028.backup", "000000010000000000000003.partial"):
        assert wal.is_archive_name(good)


def test_a_non_postgresql_database_is_refused(manager: BackupManager, tmp_path: Path) -> None:
    manager.register_database("files", tmp_path)
    with pytest.raises(ConfigError, match="kind 'files'"):
        archive.push(manager, "files", tmp_path / "000000010000000000000001")


@given(tli=st.integers(1, 0xFFFFFFFF), raw=st.integers(0, 2**64 - 1), shift=st.integers(20, 30))
def test_segment_names_round_trip_and_match_xlogfilename(tli: int, raw: int, shift: int) -> None:
    size = 1 << shift
    segno = raw >> shift  # every segment of the 64-bit WAL space
    name = wal.segment_name(tli, segno, size)
    # XLogFileName: "%08X%08X%08X", tli, segno / XLogSegmentsPerXLogId, segno % XLogSegmentsPerXLogId
    per_id = 0x100000000 // size
    assert name == "%08X%08X%08X" % (tli, segno // per_id, segno % per_id)  # noqa: UP031
    assert wal.parse_segment(name, size) == (tli, segno)


@given(lsn=st.integers(0, 2**64 - 1))
def test_lsns_round_trip(lsn: int) -> None:
    text = wal.format_lsn(lsn)
    assert wal.parse_lsn(text) == lsn
    hi, lo = text.split("/")
    assert int(hi, 16) * 2**32 + int(lo, 16) == lsn


def test_history_files_parse_and_damage_names_the_line() -> None:
    text = "1\t0/3000000\tno recovery target specified\n\n# comment\n2\t0/5000100\tbefore 2026-11-30\n"
    spans = wal.parse_history(3, text, "00000003.history")
    assert spans == [
        wal.TimelineSpan(1, 0, 0x3000000),
        wal.TimelineSpan(2, 0x3000000, 0x5000100),
        wal.TimelineSpan(3, 0x5000100, None),
    ]
    seg = 1 << 24
    names = list(wal.segments_between(spans, 0x2FFFFFF, 0x5000100, seg))
    assert names == ["000000010000000000000002", "000000020000000000000003", "000000020000000000000004",
                     "000000030000000000000005"]  # fmt: skip
    with pytest.raises(ConfigError, match="line 2"):
        wal.parse_history(3, "1\t0/3000000\tx\nbogus\n", "h")
    with pytest.raises(ConfigError, match="out of order"):
        wal.parse_history(3, "2\t0/3000000\tx\n1\t0/4000000\ty\n", "h")
    with pytest.raises(ConfigError, match="not an LSN"):
        wal.parse_lsn("12345")
    with pytest.raises(ConfigError, match="power of two"):
        wal.check_segment_size(3 << 20)
    with pytest.raises(ConfigError, match="past the end"):
        wal.segment_name(1, 2**44, 1 << 20)


def test_register_refuses_inconsistent_postgresql_settings(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "r")
    with pytest.raises(ConfigError, match="needs dsn"):
        m.register_database("a", tmp_path, kind="postgresql")
    with pytest.raises(ConfigError, match="archive-push"):
        m.register_database("a", tmp_path, kind="postgresql", dsn="x", archive_dir=tmp_path)
    with pytest.raises(ConfigError, match="dsn= is for postgresql"):
        m.register_database("a", tmp_path, dsn="x")
    e = m.register_database("a", tmp_path, kind="postgresql", dsn="host=/tmp")
    assert m.catalog.get_database("a").dsn == "host=/tmp" == e.dsn
    assert os.fspath(archive.spool_dir(m.repository, "a")) == m.catalog.get_database("a").archive_dir


def test_sealed_wal_is_compressed_when_the_database_says_zstd(tmp_path: Path) -> None:
    m = BackupManager(tmp_path / "repo")
    (tmp_path / "pgdata").mkdir()
    m.register_database("z", tmp_path / "pgdata", kind="postgresql", dsn="host=/nonexistent", compression="zstd")
    src = tmp_path / "src"
    src.mkdir()
    p = _segment(src, 5)  # 4,000 bytes of one repeated word: compresses well
    archive.push(m, "z", p, seal=False)
    sid = archive.seal_if_due(m, "z", force=True)
    assert sid is not None
    sealed = m.catalog.get_set(sid)
    assert sealed.compression == "zstd"
    assert sum(piece.size for piece in sealed.pieces) < p.stat().st_size
    archive.get(m, "z", p.name, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == p.read_bytes()


def test_a_directory_without_pg_version_is_not_taken_for_a_data_directory(tmp_path: Path) -> None:
    from rustybackup.errors import BackupError
    from rustybackup.postgres import basebackup

    with pytest.raises(BackupError, match="PG_VERSION"):
        basebackup.data_tree(tmp_path)
    (tmp_path / "PG_VERSION").write_text("15\n")
    for rel in ("postmaster.pid", "pg_wal/000000010000000000000001", "base/1/pgsql_tmp/t", "global/pg_internal.init"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "base/1/1259").write_text("x")
    # An unlogged relation: only its init fork is copied.
    for rel in ("base/1/16384", "base/1/16384.1", "base/1/16384_fsm", "base/1/16384_vm", "base/1/16384_init"):
        (tmp_path / rel).write_text("x")
    tree = basebackup.data_tree(tmp_path)
    assert [f[0] for f in tree.files] == ["PG_VERSION", "base/1/1259", "base/1/16384_init"]
    assert "pg_wal" in [d[0] for d in tree.dirs]
