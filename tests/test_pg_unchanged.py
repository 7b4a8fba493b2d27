"""An INCREMENTAL base backup takes a file from its parent unread only when no write can
have hidden from the timestamps (postgres/unchanged.py), and never pg_control."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup.manifest import FileEntry
from rustybackup.postgres.unchanged import TICK_NS, taken_unread, unchanged_since

S = 1_000_000_000


def walk(root: Path) -> list[tuple[str, Path, os.stat_result]]:
    return sorted((p.relative_to(root).as_posix(), p, p.stat()) for p in root.rglob("*") if p.is_file())


def entry(rel: str, st: os.stat_result, *, identity: bool = True) -> FileEntry:
    return FileEntry(
        path=rel,
        mode=0o600,
        mtime_ns=st.st_mtime_ns,
        size=st.st_size,
        digest="0" * 64,
        first_block=0,
        block_count=1,
        ctime_ns=st.st_ctime_ns if identity else None,
        ino=st.st_ino if identity else None,
        dev=st.st_dev if identity else None,
    )


def started_after(files: list[tuple[str, Path, os.stat_result]], ns: int) -> int:
    """A parent start `ns` after the newest mtime/ctime among `files`, in µs."""
    newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for _, _, st in files)
    return (newest + ns) // 1000


@pytest.fixture
def pgdata(tmp_path: Path) -> Path:
    for rel in ("base/1/1259", "base/1/1249", "global/pg_control", "global/1262", "pg_xact/0000"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode() * 100)
    return tmp_path


def test_files_untouched_well_before_the_parent_started_are_taken_unread(pgdata: Path) -> None:
    files = walk(pgdata)
    parent = [entry(rel, st) for rel, _, st in files]
    got = unchanged_since(files, parent, started_after(files, 2 * S))
    assert sorted(files[i][0] for i in got) == ["base/1/1249", "base/1/1259", "global/1262", "pg_xact/0000"]
    assert all(got[i] is parent[i] for i in got)


def test_a_file_written_within_a_tick_of_the_parents_start_is_read(pgdata: Path) -> None:
    files = walk(pgdata)
    parent = [entry(rel, st) for rel, _, st in files]
    # The newest change lies 0.5 s before the start: a write in that tick may not show.
    assert unchanged_since(files, parent, started_after(files, TICK_NS // 2)) == {}


def test_a_file_changed_since_or_read_while_changing_is_read(pgdata: Path) -> None:
    files = walk(pgdata)
    parent = [entry(rel, st, identity=rel != "base/1/1249") for rel, _, st in files]
    start = started_after(files, 2 * S)
    # Same size, same mtime put back: ctime still moves (and the inode may change).
    p = pgdata / "base/1/1259"
    st = p.stat()
    time.sleep(0.01)
    p.write_bytes(b"x" * st.st_size)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    got = {walk(pgdata)[i][0] for i in unchanged_since(walk(pgdata), parent, start)}
    assert got == {"global/1262", "pg_xact/0000"}
    # A new entry without an identity (read while it changed) is never taken unread.
    new = [entry(rel, st, identity=rel != "global/1262") for rel, _, st in walk(pgdata)]
    assert taken_unread(new, parent, start) == {"pg_xact/0000"}


@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ages=st.lists(st.integers(0, 5 * S), min_size=1, max_size=6),
    start_after=st.integers(-2 * S, 4 * S),
    touched=st.sets(st.integers(0, 5)),
)
def test_unread_exactly_when_identity_holds_and_timestamps_predate_the_start_by_a_tick(
    tmp_path_factory: pytest.TempPathFactory, ages: list[int], start_after: int, touched: set[int]
) -> None:
    """Against the rule written out: identity unchanged, mtime and ctime more than a tick
    before the parent's start, not pg_control."""
    root = tmp_path_factory.mktemp("pg")
    now = time.time_ns()
    for n, age in enumerate(ages):
        p = root / f"base/1/{16384 + n}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"a" * (n + 1))
        os.utime(p, ns=(now, now - age))
    before = walk(root)
    parent = [entry(rel, st) for rel, _, st in before]
    for n in touched:
        if n < len(ages):
            (root / f"base/1/{16384 + n}").write_bytes(b"b" * (n + 2))
    after = walk(root)
    start_us = (now + start_after) // 1000
    bound = start_us * 1000 - TICK_NS
    expected = {
        rel
        for (rel, _, st), e in zip(after, parent, strict=True)
        if (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (e.size, e.mtime_ns, e.ctime_ns, e.ino)
        and e.mtime_ns < bound
        and (e.ctime_ns or 0) < bound
    }
    assert {after[i][0] for i in unchanged_since(after, parent, start_us)} == expected
    # The page-checksum pass tells the same files apart from the new set's entries alone
    # (each carries the walk's stat): a file it skips is exactly one the backup took unread.
    assert taken_unread([entry(rel, st) for rel, _, st in after], parent, start_us) == expected
