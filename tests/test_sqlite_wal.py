"""The Rust WAL parser and page application (rust/src/wal) against SQLite itself: random
transactions are written with SQLite in WAL mode (no automatic checkpoints), the WAL is
copied, parsed by us and applied to a copy of the database file, and the result must be
what SQLite showed after the last commit the copy holds. Damaged copies (truncated,
flipped, foreign salts) must stop at an earlier commit, never apply a torn one."""

from __future__ import annotations

import random
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core
from rustybackup.errors import BackupError
from rustybackup.sqlite_wal import wal_header

Row = tuple[int, bytes]


@dataclass
class History:
    """A database file before its WAL was written, the WAL, and after each commit the WAL's
    size and the table's rows as SQLite showed them."""

    base: Path
    wal: bytes
    commits: list[tuple[int, list[Row]]]


def _rows(db: Path) -> list[Row]:
    conn = sqlite3.connect(db)
    try:
        return [(int(a), bytes(b)) for a, b in conn.execute("SELECT id, v FROM t ORDER BY id")]
    finally:
        conn.close()


def _write(tmp: Path, seed: int, transactions: int, page_size: int = 1024) -> History:
    rng = random.Random(seed)
    db = tmp / "live.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    base = tmp / "base.db"
    shutil.copyfile(db, base)
    wal = db.with_name("live.db-wal")
    commits: list[tuple[int, list[Row]]] = []
    next_id = 1
    for _ in range(transactions):
        conn.execute("BEGIN")
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.6 or next_id == 1:
                conn.execute(
                    "INSERT INTO t VALUES (?, ?)",
                    (next_id, rng.randbytes(rng.randint(0, 3 * page_size))),
                )
                next_id += 1
            elif op < 0.85:
                conn.execute(
                    "UPDATE t SET v = ? WHERE id = ?",
                    (rng.randbytes(rng.randint(0, 500)), rng.randrange(1, next_id)),
                )
            else:
                conn.execute("DELETE FROM t WHERE id = ?", (rng.randrange(1, next_id),))
        if rng.random() < 0.1:
            conn.execute("ROLLBACK")
            continue
        conn.execute("COMMIT")
        commits.append((wal.stat().st_size, _rows(db)))
    data = wal.read_bytes()
    conn.close()
    return History(base, data, commits)


def _apply(tmp: Path, h: History, data: bytes) -> list[Row]:
    """Applies what our scan accepts of `data` to a copy of the base; the rows (the base's
    when no commit was accepted)."""
    if len(data) < 32:
        return _rows(h.base)  # nothing was written (every transaction rolled back or changed nothing)
    scan = _core.wal_scan(data)
    if scan.last_commit is None:
        return _rows(h.base)
    out = tmp / "out.db"
    shutil.copyfile(h.base, out)
    _core.wal_apply(out, data, after=0, through=scan.last_commit)
    conn = sqlite3.connect(out)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    return _rows(out)


def _expected(h: History, length: int) -> list[Row]:
    """The rows after the last commit whose frames end within the first `length` bytes."""
    held = [rows for size, rows in h.commits if size <= length]
    return held[-1] if held else _rows(h.base)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    transactions=st.integers(1, 25),
    page_size=st.sampled_from([512, 1024, 4096]),
)
def test_whole_wal_reproduces_what_sqlite_shows(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    transactions: int,
    page_size: int,
) -> None:
    tmp = tmp_path_factory.mktemp("wal")
    h = _write(tmp, seed, transactions, page_size)
    assert _apply(tmp, h, h.wal) == _expected(h, len(h.wal))
    if not h.wal:
        assert not any(size for size, _ in h.commits)
        return
    scan = _core.wal_scan(h.wal)
    assert scan.page_size == page_size
    assert scan.stop_kind in ("end", "salt", "checksum")
    # A transaction that changed nothing writes no frame, hence no commit frame.
    assert len(scan.commits) == len({size for size, _ in h.commits if size > 0})


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.floats(0, 1))
def test_truncated_copy_stops_at_the_last_whole_commit(
    tmp_path_factory: pytest.TempPathFactory, seed: int, cut: float
) -> None:
    tmp = tmp_path_factory.mktemp("wal")
    h = _write(tmp, seed, 12)
    if not h.wal:
        return
    length = 32 + int((len(h.wal) - 32) * cut)
    assert _apply(tmp, h, h.wal[:length]) == _expected(h, length)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), where=st.floats(0, 1), bit=st.integers(0, 7))
def test_a_flipped_bit_never_yields_a_torn_commit(
    tmp_path_factory: pytest.TempPathFactory, seed: int, where: float, bit: int
) -> None:
    tmp = tmp_path_factory.mktemp("wal")
    h = _write(tmp, seed, 10)
    if not h.wal:
        return
    at = 32 + int((len(h.wal) - 33) * where)
    damaged = bytearray(h.wal)
    damaged[at] ^= 1 << bit
    frame_len = 24 + _core.wal_scan(h.wal).page_size
    frame_start = 32 + (at - 32) // frame_len * frame_len
    # Every commit wholly before the damaged frame survives; nothing from it on does.
    assert _apply(tmp, h, bytes(damaged)) == _expected(h, frame_start)


def test_resuming_from_a_frame_with_its_checksum_matches_a_whole_scan(
    tmp_path: Path,
) -> None:
    h = _write(tmp_path, 7, 20)
    whole = _core.wal_scan(h.wal)
    assert whole.last_commit is not None
    frame_len = 24 + whole.page_size
    frames = whole.frames
    mid = frames[len(frames) // 2][0]
    seed_at = _core.wal_scan(h.wal[: 32 + mid * frame_len])
    tail = h.wal[:32] + h.wal[32 + mid * frame_len :]
    part = _core.wal_scan(tail, mid + 1, _checksum_through(h.wal, mid))
    assert part.frames == [f for f in frames if f[0] > mid]
    assert part.checksum == whole.checksum
    assert seed_at.first_frame == 1
    # Applying in two fragments gives the same database as one pass.
    first_commit = max(c for c in whole.commits if c <= mid) if any(c <= mid for c in whole.commits) else None
    out = tmp_path / "two.db"
    shutil.copyfile(h.base, out)
    if first_commit is not None:
        _core.wal_apply(out, h.wal, after=0, through=first_commit)
        tail2 = h.wal[:32] + h.wal[32 + first_commit * frame_len :]
        _core.wal_apply(
            out,
            tail2,
            first_frame=first_commit + 1,
            seed=_checksum_through(h.wal, first_commit),
            after=first_commit,
            through=whole.last_commit,
        )
    else:
        _core.wal_apply(out, h.wal, after=0, through=whole.last_commit)
    assert _rows(out) == h.commits[-1][1]


def _checksum_through(wal: bytes, frame: int) -> tuple[int, int]:
    """The cumulative checksum stored in frame `frame`'s header (an independent read)."""
    page_size = int.from_bytes(wal[8:12], "big")
    at = 32 + (frame - 1) * (24 + page_size)
    return int.from_bytes(wal[at + 16 : at + 20], "big"), int.from_bytes(wal[at + 20 : at + 24], "big")


def test_frames_of_another_generation_end_the_run(tmp_path: Path) -> None:
    h = _write(tmp_path, 3, 8)
    scan = _core.wal_scan(h.wal)
    salt = (scan.salt[0] ^ 1, scan.salt[1])
    # The same frames under a header with other salts: not one of them belongs to it.
    foreign = wal_header(salt, scan.page_size, scan.big_endian) + h.wal[32:]
    other = _core.wal_scan(foreign)
    assert other.frames == [] and other.stop_kind == "salt" and other.stop_frame == 1


def test_damaged_headers_are_refused_naming_the_offset(tmp_path: Path) -> None:
    h = _write(tmp_path, 5, 3)
    for at, offset in ((0, 0), (5, 4), (9, 8), (20, 24)):
        bad = bytearray(h.wal)
        bad[at] ^= 0x40
        with pytest.raises(BackupError, match=f"offset {offset}"):
            _core.wal_scan(bytes(bad))
    with pytest.raises(BackupError, match="shorter than its 32-byte header"):
        _core.wal_scan(h.wal[:31])


def test_apply_refuses_bad_ranges_and_another_page_size(tmp_path: Path) -> None:
    h = _write(tmp_path, 11, 5, page_size=1024)
    scan = _core.wal_scan(h.wal)
    out = tmp_path / "x.db"
    shutil.copyfile(h.base, out)
    assert scan.last_commit is not None
    with pytest.raises(ValueError, match="not after frame"):
        _core.wal_apply(out, h.wal, after=scan.last_commit, through=scan.last_commit)
    with pytest.raises(ValueError, match="not a committed frame"):
        _core.wal_apply(out, h.wal, after=0, through=scan.last_commit + 1)
    with pytest.raises(ValueError, match="needs the cumulative checksum"):
        _core.wal_scan(h.wal, 2)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("CREATE TABLE a (x)")
    conn.close()
    with pytest.raises(BackupError, match="page size is 4096"):
        _core.wal_apply(other, h.wal, after=0, through=scan.last_commit)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 9), resume_at=st.floats(0, 1))
def test_reading_the_live_wal_in_chunks_matches_one_scan(
    tmp_path_factory: pytest.TempPathFactory, seed: int, chunk: int, resume_at: float
) -> None:
    from rustybackup import sqlite_wal

    tmp = tmp_path_factory.mktemp("wal")
    h = _write(tmp, seed, 12)
    if not h.wal:
        return
    whole = _core.wal_scan(h.wal)
    db = tmp / "copy.db"
    # The live file as a restart leaves it: this generation, then an older one's leftovers.
    stale = wal_header((whole.salt[0] - 1, whole.salt[1]), whole.page_size, whole.big_endian)
    db.with_name("copy.db-wal").write_bytes(h.wal + stale[8:] * 50)
    old = sqlite_wal._CHUNK_FRAMES
    sqlite_wal._CHUNK_FRAMES = chunk
    try:
        read = sqlite_wal.read_wal(db)
        commits = whole.commits
        resume = None
        if commits:
            at = commits[int(resume_at * (len(commits) - 1))]
            resume = (whole.salt, at, _checksum_through(h.wal, at))
        part = sqlite_wal.read_wal(db, resume)
    finally:
        sqlite_wal._CHUNK_FRAMES = old
    assert read is not None and part is not None
    assert read.scan.frames == whole.frames
    assert read.data == h.wal[: whole.committed_len]
    assert read.uncommitted == whole.uncommitted
    if resume is not None:
        assert part.resumed and part.scan.frames == [f for f in whole.frames if f[0] > resume[1]]
        assert part.scan.checksum == whole.checksum
