"""BackupManager: backup types, sources, progress, cancellation and error cases."""

from __future__ import annotations

import logging
import os
import threading
from itertools import pairwise
from pathlib import Path

import pytest
from engine_support import SimClock, repo_manager, sim_clock, snapshot_tree
from privileges import fork_and_run, shared_workdir
from rustybackup import (
    BackupCancelled,
    BackupError,
    BackupManager,
    BackupProgress,
    BackupType,
    CatalogError,
    ConfigError,
    _core,
)

clock = pytest.fixture(sim_clock)
manager = pytest.fixture(repo_manager)


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.bin").write_bytes(os.urandom(50_000))
    (root / "sub" / "b.txt").write_text("hello\n")
    (root / "sub" / "deeper" / "empty").write_bytes(b"")
    (root / "sub" / "link").symlink_to("../a.bin")
    os.chmod(root / "sub" / "b.txt", 0o600)
    os.utime(root / "a.bin", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))


def test_full_backup_restores_contents_modes_mtimes_and_links(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    manager.register_database("files", src)
    s = manager.backup("files", BackupType.FULL, tags=("nightly",))
    assert s.backup_type is BackupType.FULL and s.tags == ("nightly",) and s.parent_id is None
    assert len(s.pieces) == 1 and s.pieces[0].block_count == 7 + 1  # 50000/8192 -> 7 blocks, + b.txt
    manager.restore("files", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)
    assert os.readlink(tmp_path / "out" / "sub" / "link") == "../a.bin"


def test_incremental_stores_only_changed_blocks(manager: BackupManager, tmp_path: Path, clock: SimClock) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = bytearray(os.urandom(8192 * 100))
    (src / "f").write_bytes(data)
    manager.register_database("db", src)
    full = manager.backup("db", "full")
    clock.advance(hours=1)
    data[8192 * 42 + 17] ^= 0xFF
    (src / "f").write_bytes(data)
    incr = manager.backup("db", "incremental")
    assert incr.backup_type is BackupType.INCREMENTAL and incr.parent_id == full.id
    assert incr.pieces[0].block_count == 1
    assert incr.size < full.size // 10
    manager.restore("db", tmp_path / "now")
    assert (tmp_path / "now" / "f").read_bytes() == data
    manager.restore("db", tmp_path / "then", until=full.finished_at)
    assert (tmp_path / "then" / "f").read_bytes() != data


def test_differential_is_taken_against_the_full(manager: BackupManager, tmp_path: Path, clock: SimClock) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"a" * 20000)
    manager.register_database("db", src)
    full = manager.backup("db", "full")
    for i in range(2):
        clock.advance(hours=1)
        (src / "f").write_bytes(b"a" * 20000 + bytes([i]) * 10)
        manager.backup("db", "incremental")
    clock.advance(hours=1)
    diff = manager.backup("db", "differential")
    assert diff.parent_id == full.id and diff.pieces[0].block_count == 1
    path = manager.catalog.find_recovery_path("db")
    assert [s.id for s in path] == [full.id, diff.id]


def test_incremental_without_full_is_promoted_and_warned(
    manager: BackupManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    manager.register_database("db", tmp_path / "f")
    with caplog.at_level(logging.WARNING):
        s = manager.backup("db", "differential")
    assert s.backup_type is BackupType.FULL
    assert "no usable FULL backup of db yet: DIFFERENTIAL promoted to FULL" in caplog.text


def test_single_file_source_restores_under_its_name(manager: BackupManager, tmp_path: Path) -> None:
    (tmp_path / "data.db").write_bytes(b"123" * 5000)
    manager.register_database("one", tmp_path / "data.db")
    manager.backup("one", "full")
    manager.restore("one", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["data.db"]
    assert (tmp_path / "out" / "data.db").read_bytes() == b"123" * 5000


def test_zstd_compression_round_trips_and_shrinks(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "text").write_bytes(b"compressible line of text\n" * 20000)
    (src / "noise").write_bytes(os.urandom(30000))
    manager.register_database("z", src, compression="zstd", algorithm="sha256", block_size=4096)
    s = manager.backup("z", "full")
    assert s.size < 100_000 and s.algorithm == "sha256" and s.compression == "zstd"
    manager.restore("z", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)


def test_progress_reports_bytes_and_files(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(20 << 20))
    manager.register_database("p", src)
    seen: list[BackupProgress] = []
    manager.backup("p", "full", progress=seen.append)
    assert len(seen) >= 2
    assert all(a.bytes_done <= b.bytes_done for a, b in pairwise(seen))
    assert seen[-1].bytes_done == 20 << 20 and seen[-1].bytes_total == 20 << 20 and seen[-1].files_total == 1


class _FlipsOn:
    """A cancel flag that turns on at its n-th is_set() call."""

    def __init__(self, n: int) -> None:
        self.calls = 0
        self.n = n

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_cancel_inside_the_rust_pass_registers_nothing(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(12 << 20))
    manager.register_database("c", src)
    flag = _FlipsOn(2)  # the pre-check passes, the first check in Rust cancels
    with pytest.raises(BackupCancelled, match="cancelled"):
        manager.backup("c", "full", cancel=flag)
    assert flag.calls == 2
    assert manager.catalog.list_sets() == []
    assert list((manager.repository / "staging").iterdir()) == []
    assert list((manager.repository / "sets").iterdir()) == []


def test_a_set_event_cancels_before_reading(manager: BackupManager, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    manager.register_database("c", tmp_path / "f")
    ev = threading.Event()
    ev.set()
    with pytest.raises(BackupCancelled, match="backup of 'c' cancelled before it started"):
        manager.backup("c", "full", cancel=ev)
    assert manager.catalog.list_sets() == []


def test_unknown_database_is_a_clear_error(manager: BackupManager) -> None:
    with pytest.raises(CatalogError, match=r"unknown database 'nope' \(registered: none\)"):
        manager.backup("nope", "full")


def test_missing_source_names_the_path_and_registers_nothing(manager: BackupManager, tmp_path: Path) -> None:
    manager.register_database("gone", tmp_path / "missing")
    with pytest.raises(BackupError, match=f"source of database 'gone' does not exist: {tmp_path / 'missing'}"):
        manager.backup("gone", "full")
    assert manager.catalog.list_sets() == []
    assert list((manager.repository / "staging").iterdir()) == []


def test_an_unreadable_file_is_skipped_and_named_in_the_summary() -> None:
    # Root reads any file: run the backup as nobody, in a directory nobody may write.
    with shared_workdir("rb-unreadable-") as (work, src):
        (src / "secret").write_bytes(b"x")
        (src / "open").write_bytes(b"y")
        os.chmod(src / "secret", 0)
        os.chmod(src / "open", 0o644)

        def attempt() -> str:
            manager = BackupManager(work / "repo", clock=SimClock())
            manager.register_database("u", src)
            s = manager.backup("u", "full")
            return f"{[(e.path, e.reason) for e in manager.summary(s.id).skipped]} {s.file_count}"

        out = fork_and_run(attempt, drop_to_nobody=os.geteuid() == 0)
        assert out == "[('secret', 'cannot be read (Permission denied)')] 1"


def test_bad_registrations_are_config_errors(manager: BackupManager, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database name 'a b' is invalid"):
        manager.register_database("a b", tmp_path)
    with pytest.raises(ConfigError, match="kind 'oracle' is invalid"):
        manager.register_database("x", tmp_path, kind="oracle")
    with pytest.raises(ConfigError, match="block_size 100 is out of range"):
        manager.register_database("x", tmp_path, block_size=100)
    with pytest.raises(ConfigError, match="unknown algorithm 'crc32'"):
        manager.register_database("x", tmp_path, algorithm="crc32")
    with pytest.raises(ConfigError, match="compression 'lz4' is invalid"):
        manager.register_database("x", tmp_path, compression="lz4")
    manager.register_database("x", tmp_path)
    with pytest.raises(ConfigError, match="unknown backup type 'weekly'"):
        manager.backup("x", "weekly")
    with pytest.raises(ConfigError, match="database 'x' has no archive_dir"):
        manager.backup("x", "archive_log")


def test_repository_format_newer_version_is_refused(tmp_path: Path) -> None:
    BackupManager(tmp_path / "r")
    (tmp_path / "r" / "format").write_text("rustybackup-repository 7\n")
    with pytest.raises(CatalogError, match="repository format version 7 is newer than the version this"):
        BackupManager(tmp_path / "r")
    (tmp_path / "r" / "format").write_text("something else\n")
    with pytest.raises(CatalogError, match="unrecognised repository format 'something else'"):
        BackupManager(tmp_path / "r")


def test_a_non_empty_foreign_directory_is_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x")
    with pytest.raises(CatalogError, match="is not a rustybackup repository"):
        BackupManager(tmp_path)


def test_disk_full_registers_nothing_and_keeps_earlier_sets(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes past the limit fail (EFBIG), like a full disk."""
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(b"s" * 1000)
    repo = tmp_path / "repo"
    m = BackupManager(repo)
    m.register_database("d", src)
    first = m.backup("d", "full")
    (src / "big").write_bytes(os.urandom(3 << 20))
    script = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
from rustybackup import BackupManager, BackupError
try:
    BackupManager({str(repo)!r}).backup("d", "full")
except BackupError as exc:
    print(exc)
    sys.exit(3)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert "backup of 'd' failed (File too large: " in out.stdout and "nothing was registered" in out.stdout
    m2 = BackupManager(repo)
    assert [s.id for s in m2.catalog.list_sets()] == [first.id]
    assert list((repo / "staging").iterdir()) == []
    m2.restore("d", tmp_path / "out", backup_set_id=first.id)
    assert (tmp_path / "out" / "small").read_bytes() == b"s" * 1000


def test_piece_api_for_inspection(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(8192 * 3))
    manager.register_database("v", src)
    s = manager.backup("v", "full")
    piece = manager.repository / s.pieces[0].path
    info = _core.read_piece_info(piece)
    assert (info.block_count, info.algorithm, info.checksum) == (3, "blake3", s.pieces[0].checksum)
    index = _core.read_piece_index(piece)
    assert [(e[0], e[1]) for e in index] == [(0, 0), (0, 1), (0, 2)]
    # Random data does not compress: stored raw, back to back after the 32-byte header.
    assert [(e[2], e[3], e[4], e[5]) for e in index] == [(32 + 8192 * i, 8192, 8192, 0) for i in range(3)]


def test_odd_file_names_round_trip(manager: BackupManager, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    odd = [b"back\\slash", b"new\nline", b"latin1-\xe9\xff", "ünïcødé".encode()]
    for name in odd:
        with open(os.path.join(os.fsencode(src), name), "wb") as fh:
            fh.write(name * 100)
    manager.register_database("odd", src)
    manager.backup("odd", "full")
    manager.backup("odd", "incremental")
    manager.restore("odd", tmp_path / "out")
    out = os.fsencode(tmp_path / "out")
    assert sorted(os.listdir(out)) == sorted(odd)
    for name in odd:
        with open(os.path.join(out, name), "rb") as fh:
            assert fh.read() == name * 100
