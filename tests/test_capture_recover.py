"""Reading back a stopped capturer's spool (capture_recover.py): a segment cut anywhere
(its frames, its time lines, or both) keeps exactly the commits whose frames are whole
and whose time line is complete, checked against a plain-Python oracle of the layout;
a damaged frame is found by its checksum; segments already registered, or that no
longer continue the chain, are dropped; what is cut is logged with file and offset."""

from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import _core
from rustybackup.capture_recover import recover
from rustybackup.capture_spool import Segment, commit_lines, times_path
from rustybackup.sqlite_wal import FRAME_HEADER_LEN, HEADER_LEN, WalCapture, wal_path

PAGE = 1024


def _wal(tmp: Path, seed: int, commits: int) -> tuple[Path, sqlite3.Connection]:
    """A real WAL of `commits` transactions of 1..several pages (checkpoints off, the
    connection kept open so the WAL stays)."""
    rng = random.Random(seed)
    db = tmp / "w.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA page_size={PAGE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB)")
    for _ in range(commits):
        conn.execute("BEGIN")
        for _row in range(rng.randint(1, 3)):
            conn.execute("INSERT INTO t (pad) VALUES (?)", (rng.randbytes(rng.choice((10, 900, 2500))),))
        conn.execute("COMMIT")
    return wal_path(db), conn


def _segment(spool: Path, wal: Path, n: int = 1) -> tuple[Segment, list[tuple[int, int]]]:
    """Segment file `n` as the spool writes it: the frames, the description, time lines."""
    path = spool / f"{n:08d}"
    got = _core.wal_copy(wal, path)
    assert got is not None and got.commits
    commits = [(f, 1_000 + i) for i, f in enumerate(got.commits)]
    seg = Segment(path, 1, got.salt, got.page_size, 1, got.header_checksum, commits[-1][0], got.checksum, commits)
    times_path(path).write_bytes(seg.describe() + commit_lines(commits))
    return seg, commits


def _spooled(tmp: Path, seed: int, commits: int) -> tuple[Path, Segment, list[tuple[int, int]]]:
    """The spool directory ``tmp/spool`` holding segment 1 of a real WAL of `commits`
    transactions, the segment and its (frame, time) commits."""
    wal, conn = _wal(tmp, seed, commits)
    spool = tmp / "spool"
    spool.mkdir()
    try:
        seg, kept = _segment(spool, wal)
    finally:
        conn.close()
    return spool, seg, kept


def _oracle(commits: list[tuple[int, int]], desc_len: int, data_len: int, times_len: int) -> list[tuple[int, int]]:
    """The commits a cut spool keeps: a prefix, each with its frame wholly in the data and
    its time line wholly in the times file."""
    frame_len = FRAME_HEADER_LEN + PAGE
    kept = []
    line_end = desc_len
    for frame, seen in commits:
        line_end += len(f"{frame} {seen}\n")
        if HEADER_LEN + frame * frame_len > data_len or line_end > times_len:
            break
        kept.append((frame, seen))
    return kept


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), data_cut=st.floats(0, 1), times_cut=st.floats(0, 1), cut_times=st.booleans())
def test_a_cut_segment_keeps_exactly_the_whole_timed_commits(
    tmp_path_factory: pytest.TempPathFactory, seed: int, data_cut: float, times_cut: float, cut_times: bool
) -> None:
    spool, seg, commits = _spooled(tmp_path_factory.mktemp("rec"), seed, 12)
    desc_len = len(seg.describe())
    data = seg.path.read_bytes()
    times = times_path(seg.path).read_bytes()
    data_len = HEADER_LEN + int((len(data) - HEADER_LEN) * data_cut)
    times_len = desc_len + int((len(times) - desc_len) * times_cut) if cut_times else len(times)
    seg.path.write_bytes(data[:data_len])
    times_path(seg.path).write_bytes(times[:times_len])
    want = _oracle(commits, desc_len, data_len, times_len)
    got = recover(spool, None)
    if not want:
        assert got == [] and not any(spool.iterdir())
        return
    assert len(got) == 1
    assert got[0].commits == want and got[0].last_frame == want[-1][0]
    frame_len = FRAME_HEADER_LEN + PAGE
    assert seg.path.stat().st_size == HEADER_LEN + want[-1][0] * frame_len
    # The checksum through the kept frames is the chain's own (what the next frame needs).
    scan = _core.wal_scan(seg.path.read_bytes())
    assert got[0].checksum == scan.checksum and scan.last_commit == want[-1][0]
    # The files were cut to what was kept: a second recovery keeps the same.
    assert recover(spool, None) == got


def test_a_damaged_frame_is_found_by_its_checksum_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool, seg, commits = _spooled(tmp_path, 5, 10)
    frame_len = FRAME_HEADER_LEN + PAGE
    # A byte of the page of frame k (a whole file: only its checksum tells).
    k = commits[len(commits) // 2][0]
    at = HEADER_LEN + (k - 1) * frame_len + FRAME_HEADER_LEN + 100
    data = bytearray(seg.path.read_bytes())
    data[at] ^= 0x40
    seg.path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        got = recover(spool, None)
    kept = [c for c in commits if c[0] < k]
    assert got[0].commits == kept
    good = HEADER_LEN + kept[-1][0] * frame_len
    assert seg.path.stat().st_size == good
    assert f"{seg.path}: cut at offset {good}" in caplog.text
    assert (
        f"{times_path(seg.path)}: " in caplog.text and "commit times name frames the spool does not hold" in caplog.text
    )


def test_registered_and_unchained_segments_are_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wal, conn = _wal(tmp_path, 9, 6)
    spool = tmp_path / "spool"
    spool.mkdir()
    try:
        seg, commits = _segment(spool, wal, 1)
        conn.execute("INSERT INTO t (pad) VALUES (x'00')")
        # Segment 2: the frames after segment 1's, as the next pull appends them to a new file.
        got = _core.wal_copy(wal, spool / "00000002", (seg.salt, seg.last_frame, seg.checksum))
    finally:
        conn.close()
    assert got is not None and got.resumed and got.commits
    seg2 = Segment(
        spool / "00000002",
        1,
        got.salt,
        got.page_size,
        got.first_frame,
        seg.checksum,
        got.commits[-1],
        got.checksum,
        [(f, 5_000) for f in got.commits],
    )
    times_path(seg2.path).write_bytes(seg2.describe() + commit_lines(seg2.commits))
    (spool / "stray").write_bytes(b"x")
    registered = WalCapture(
        generation=1, salt=seg.salt, page_size=PAGE, first_frame=1, last_frame=seg.last_frame, seed=seg.seed,
        checksum=seg.checksum, commits=tuple(commits), continuous=True, note="", file="f",
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        out = recover(spool, registered)
    assert [s.path for s in out] == [seg2.path] and out[0].commits == seg2.commits
    assert "already registered" in caplog.text and "not a spool file" in caplog.text
    assert sorted(p.name for p in spool.iterdir()) == ["00000002", "00000002.times"]
    # Segment 2 no longer continues anything once segment 1 is not the registered tip.
    other = WalCapture(
        generation=1, salt=seg.salt, page_size=PAGE, first_frame=1, last_frame=seg.last_frame - 1, seed=seg.seed,
        checksum=(1, 2), commits=(), continuous=True, note="", file=None,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert recover(spool, other) == []
    assert "does not continue generation 1 frame" in caplog.text


def test_an_unreadable_description_drops_the_segment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool, seg, _ = _spooled(tmp_path, 1, 3)
    times_path(seg.path).write_bytes(b'{"generation": 1, "sal')
    with caplog.at_level(logging.WARNING):
        assert recover(spool, None) == []
    assert "description at offset 0 is not readable" in caplog.text and not any(spool.iterdir())
