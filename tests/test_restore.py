"""Restore: targets, hostile manifests, corrupt blocks, archive logs, live SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from engine_support import SimClock, repo_manager, sim_clock
from manifest_support import stored
from rustybackup import BackupError, BackupManager, BackupSet, BackupType, CatalogError, NoRecoveryPath

clock = pytest.fixture(sim_clock)
manager = pytest.fixture(repo_manager)


def _one_file_set(manager: BackupManager, tmp_path: Path, data: bytes) -> str:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "f.bin").write_bytes(data)
    manager.register_database("db", src)
    return manager.backup("db", "full").id


def test_target_must_be_absent_or_empty(manager: BackupManager, tmp_path: Path) -> None:
    _one_file_set(manager, tmp_path, b"x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("mine")
    with pytest.raises(BackupError, match=f"restore target {tmp_path / 'busy'} must be absent or an empty directory"):
        manager.restore("db", tmp_path / "busy")
    assert (tmp_path / "busy" / "keep").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    manager.restore("db", tmp_path / "empty")
    assert (tmp_path / "empty" / "f.bin").read_bytes() == b"x"


def test_corrupt_block_error_names_set_piece_file_and_block(manager: BackupManager, tmp_path: Path) -> None:
    set_id = _one_file_set(manager, tmp_path, os.urandom(8192 * 4))
    piece = manager.repository / "sets" / set_id / "data.piece"
    raw = bytearray(piece.read_bytes())
    raw[32 + 8192 * 2 + 100] ^= 0x10
    piece.write_bytes(raw)
    with pytest.raises(BackupError) as info:
        manager.restore("db", tmp_path / "out")
    msg = str(info.value)
    assert msg.startswith(f'restore of set {set_id} failed: corrupt block 2 of file "f.bin" in piece {piece}')
    assert f"at offset {32 + 8192 * 2}" in msg


@pytest.mark.parametrize("bad", ["../evil", "/etc/evil", "a/../../evil", "a//b", "./x"])
def test_manifest_paths_escaping_the_target_are_rejected(manager: BackupManager, tmp_path: Path, bad: str) -> None:
    set_id = _one_file_set(manager, tmp_path, b"data")
    mpath = manager.repository / "sets" / set_id / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"][0]["path"] = bad
    mpath.write_bytes(stored(m))
    # The manifest is refused as a whole (manifest.py), naming the file and the field.
    with pytest.raises(
        CatalogError, match=rf"sets/{set_id}/manifest.json: files\[0\].path: .*would escape the restore"
    ):
        manager.restore("db", tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_manifest_link_pointing_out_is_restored_as_a_link(manager: BackupManager, tmp_path: Path) -> None:
    """Links are data: restore recreates the text and never follows it."""
    set_id = _one_file_set(manager, tmp_path, b"data")
    mpath = manager.repository / "sets" / set_id / "manifest.json"
    m = json.loads(mpath.read_text())
    m["symlinks"] = [{"path": "l", "target": "../../etc", "mtime_ns": 0}]
    mpath.write_bytes(stored(m))
    manager.restore("db", tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "l") == "../../etc"
    assert os.lstat(tmp_path / "out" / "l").st_mtime_ns == 0


def test_archive_logs_are_copied_once_and_restored_up_to_until(
    manager: BackupManager, tmp_path: Path, clock: SimClock
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "base").write_bytes(b"base")
    wal = tmp_path / "wal"
    wal.mkdir()
    manager.register_database("pg", data, archive_dir=wal)
    manager.backup("pg", "full")
    clock.advance(minutes=5)
    (wal / "000001").write_bytes(b"one" * 1000)
    first = manager.backup("pg", "archive_log")
    assert first.file_count == 1
    clock.advance(minutes=5)
    (wal / "000002").write_bytes(b"two" * 1000)
    second = manager.backup("pg", "archive_log")
    assert second.file_count == 1 and second.pieces[0].block_count == 1
    clock.advance(minutes=5)
    assert manager.backup("pg", "archive_log").file_count == 0
    manager.restore("pg", tmp_path / "r1", until=first.finished_at)
    assert sorted(os.listdir(tmp_path / "r1" / "archive")) == ["000001"]
    manager.restore("pg", tmp_path / "r2")
    assert (tmp_path / "r2" / "archive" / "000002").read_bytes() == b"two" * 1000
    assert (tmp_path / "r2" / "base").read_bytes() == b"base"


def test_archive_log_with_changed_content_is_an_error(manager: BackupManager, tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    wal.mkdir()
    (wal / "000001").write_bytes(b"original")
    manager.register_database("pg", tmp_path / "wal", archive_dir=wal)
    s = manager.backup("pg", "archive_log")
    (wal / "000001").write_bytes(b"tampered")
    with pytest.raises(
        BackupError, match=f"archive file '000001' in {wal} differs from the copy already backed up in set {s.id}"
    ):
        manager.backup("pg", "archive_log")
    assert len(manager.catalog.list_sets(backup_type=BackupType.ARCHIVE_LOG)) == 1


def test_restore_of_a_missing_point_in_time_raises(manager: BackupManager, tmp_path: Path, clock: SimClock) -> None:
    _one_file_set(manager, tmp_path, b"x")
    with pytest.raises(
        NoRecoveryPath,
        match="no usable FULL backup of db finished at or before 2025-.*; the oldest FULL, .*, finished 2026-",
    ):
        manager.restore("db", tmp_path / "out", until=clock.now.replace(year=2025))


def test_live_sqlite_snapshot_is_consistent(manager: BackupManager, tmp_path: Path, clock: SimClock) -> None:
    db = tmp_path / "live.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
    conn.commit()
    conn.close()
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        c = sqlite3.connect(db, timeout=30)
        i = 0
        while not stop.is_set():
            i += 1
            c.execute("INSERT INTO t VALUES (?, ?)", (i, os.urandom(300)))
            c.commit()
            written[0] = i
        c.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        manager.register_database("lite", db, kind="sqlite", block_size=4096)
        sets: list[BackupSet] = []
        for kind in ("full", "incremental", "incremental", "differential"):
            while written[0] < 50 * (len(sets) + 1):
                stop.wait(0.01)
            clock.advance(minutes=1)
            sets.append(manager.backup("lite", kind))
    finally:
        stop.set()
        t.join()
    assert [s.backup_type.value for s in sets] == ["full", "incremental", "incremental", "differential"]
    counts = []
    for i, s in enumerate(sets):
        out = tmp_path / f"r{i}"
        manager.restore("lite", out, backup_set_id=s.id)
        c = sqlite3.connect(out / "live.db")
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = [r[0] for r in c.execute("SELECT id FROM t ORDER BY id")]
        c.close()
        assert ids == list(range(1, len(ids) + 1)), "rows must be a gap-free prefix"
        counts.append(len(ids))
    assert counts == sorted(counts) and counts[0] >= 50


def test_missing_piece_names_the_set_and_file(manager: BackupManager, tmp_path: Path) -> None:
    set_id = _one_file_set(manager, tmp_path, b"data" * 100)
    piece = manager.repository / "sets" / set_id / "data.piece"
    piece.unlink()
    with pytest.raises(BackupError, match=f"restore of set {set_id} failed: No such file or directory: {piece}"):
        manager.restore("db", tmp_path / "out")


def test_damaged_block_map_is_a_checksum_error(manager: BackupManager, tmp_path: Path) -> None:
    set_id = _one_file_set(manager, tmp_path, b"data" * 100)
    bmap = manager.repository / "sets" / set_id / "blockmap"
    raw = bytearray(bmap.read_bytes())
    # A digest byte of the first record (format 2: header, 24-byte run header, 21 bytes
    # of fields): only the checksum can tell it changed.
    raw[32 + 24 + 21 + 3] ^= 1
    bmap.write_bytes(raw)
    with pytest.raises(BackupError, match=f"restore of set {set_id} failed: {bmap}: checksum mismatch"):
        manager.restore("db", tmp_path / "out")


def test_unreadable_manifest_is_named(manager: BackupManager, tmp_path: Path) -> None:
    set_id = _one_file_set(manager, tmp_path, b"data")
    (manager.repository / "sets" / set_id / "manifest.json").write_text("{not json")
    with pytest.raises(CatalogError, match=f"^sets/{set_id}/manifest.json: not a JSON manifest"):
        manager.restore("db", tmp_path / "out")


def test_truncated_piece_is_a_format_error(manager: BackupManager, tmp_path: Path) -> None:
    set_id = _one_file_set(manager, tmp_path, b"data" * 3000)
    piece = manager.repository / "sets" / set_id / "data.piece"
    piece.write_bytes(piece.read_bytes()[:-10])
    with pytest.raises(BackupError, match=f"restore of set {set_id} failed: {piece}: bad trailer magic"):
        manager.restore("db", tmp_path / "out")


def test_naive_until_is_refused(manager: BackupManager, tmp_path: Path) -> None:
    from datetime import datetime

    _one_file_set(manager, tmp_path, b"x")
    with pytest.raises(ValueError, match="datetime 2026-01-01T00:00:00 has no time zone; pass an aware datetime"):
        manager.restore("db", tmp_path / "out", until=datetime(2026, 1, 1))
