"""`_core.wal_copy` (the capture step's copy of a live WAL, rust/src/wal/copy.rs) against
an independent oracle: SQLite writes random transactions in WAL mode (no automatic
checkpoints), then the WAL file, possibly damaged or cut, is copied by `wal_copy` and
must hold exactly the header and the frames through the last commit that `wal_scan`
finds in the whole file read into memory, from frame 1 or resumed after any commit."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core
from rustybackup.errors import BackupError

HEADER = 32


def _write_wal(d: Path, seed: int, transactions: int) -> Path:
    """A WAL of `transactions` random commits (inserts, updates, deletes of rows of up to
    3 KiB, so some transactions span several pages)."""
    rng = random.Random(seed)
    db = d / "a.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA page_size=1024")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    for _ in range(transactions):
        conn.execute("BEGIN")
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.6:
                conn.execute("INSERT INTO t (v) VALUES (?)", (rng.randbytes(rng.randint(1, 3000)),))
            elif op < 0.85:
                conn.execute("UPDATE t SET v = ? WHERE id = ?", (rng.randbytes(50), rng.randint(1, 50)))
            else:
                conn.execute("DELETE FROM t WHERE id = ?", (rng.randint(1, 50),))
        conn.execute("COMMIT")
    # The WAL must outlive the connection: copy it before the close checkpoints it away.
    wal = d / "copy-wal"
    wal.write_bytes((d / "a.db-wal").read_bytes())
    conn.close()
    return wal


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32),
    transactions=st.integers(1, 12),
    damage=st.sampled_from(["none", "cut", "flip", "tail"]),
    where=st.floats(0, 1),
    resume_at=st.floats(0, 1),
)
def test_copy_holds_exactly_the_committed_frames(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    transactions: int,
    damage: str,
    where: float,
    resume_at: float,
) -> None:
    d = tmp_path_factory.mktemp("walcopy")
    wal = _write_wal(d, seed, transactions)
    data = bytearray(wal.read_bytes())
    at = HEADER + int(where * (len(data) - HEADER - 1))
    if damage == "cut":
        del data[at:]
    elif damage == "flip":
        data[at] ^= 0x04
    elif damage == "tail":
        data += os.urandom(1024 + 24)
    wal.write_bytes(bytes(data))
    oracle = _core.wal_scan(bytes(data))
    dest = d / "out"
    got = _core.wal_copy(wal, dest)
    assert got is not None
    assert (got.salt, got.page_size, got.header_checksum) == (oracle.salt, oracle.page_size, oracle.header_checksum)
    assert got.commits == oracle.commits
    assert got.checksum == oracle.checksum
    assert (got.stop_kind, got.stop_frame, got.uncommitted) == (oracle.stop_kind, oracle.stop_frame, oracle.uncommitted)
    if oracle.last_commit is None:
        assert not dest.exists() and got.written == 0
    else:
        assert dest.read_bytes() == bytes(data[: oracle.committed_len])
        assert got.written == oracle.committed_len
    # Resumed after one of the commits: the frames after it, chained from its checksum.
    if oracle.commits:
        frame_len = 24 + oracle.page_size
        k = oracle.commits[int(resume_at * (len(oracle.commits) - 1))]
        part = _core.wal_scan(bytes(data[: HEADER + k * frame_len]))
        again = _core.wal_copy(wal, dest, (oracle.salt, k, part.checksum))
        assert again is not None and again.resumed and again.first_frame == k + 1
        assert again.commits == [c for c in oracle.commits if c > k]
        assert again.checksum == oracle.checksum
        if again.commits:
            assert dest.read_bytes() == bytes(data[:HEADER]) + bytes(
                data[HEADER + k * frame_len : oracle.committed_len]
            )
        else:
            assert not dest.exists()


def test_no_wal_and_a_bad_header(tmp_path: Path) -> None:
    assert _core.wal_copy(tmp_path / "absent-wal", tmp_path / "out") is None
    (tmp_path / "short-wal").write_bytes(b"\0" * 10)
    assert _core.wal_copy(tmp_path / "short-wal", tmp_path / "out") is None
    (tmp_path / "bad-wal").write_bytes(b"\0" * 64)
    with pytest.raises(BackupError, match="offset 0"):
        _core.wal_copy(tmp_path / "bad-wal", tmp_path / "out")
    assert not (tmp_path / "out").exists()
