"""Cross-file and cross-set dedup (issue 17): a block identical to one already stored (in
the same backup, or in the parent's state) is stored once, its block-map record naming
the block that holds it. Restores are byte-identical (the source tree is the oracle),
a damaged shared block is reported for every file that uses it, retention keeps what a
kept set refers to, and database sources keep the positional comparison only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, RetentionPolicy, VerificationType
from rustybackup.verify import Verifier

BS = 8192


def stored_bytes(m: BackupManager, set_id: str) -> int:
    """Block bytes the set's own piece holds."""
    return sum(p.size for p in m.set_manifest(set_id).pieces)


def own_blocks(m: BackupManager, set_id: str) -> int:
    return sum(p.block_count for p in m.set_manifest(set_id).pieces)


def test_a_copied_file_adds_almost_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(4 << 20))
    m = BackupManager(tmp_path / "repo", clock=SimClock())
    m.register_database("t", src)
    full = m.backup("t", BackupType.FULL)
    assert own_blocks(m, full.id) == (4 << 20) // BS
    shutil.copyfile(src / "big", src / "copy")
    (src / "sub").mkdir()
    shutil.copyfile(src / "big", src / "sub" / "again")
    inc = m.backup("t", BackupType.INCREMENTAL)
    assert own_blocks(m, inc.id) == 0
    assert stored_bytes(m, inc.id) < 64 << 10  # the piece's own header and trailer
    m.restore("t", tmp_path / "out", backup_set_id=inc.id)
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)


def test_identical_files_and_blocks_in_one_backup_are_stored_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    block = os.urandom(BS)
    other = os.urandom(BS)
    (src / "a").write_bytes(block * 10 + other)
    (src / "b").write_bytes(block * 3 + other + b"tail")
    (src / "zeros").write_bytes(bytes(BS * 20))
    m = BackupManager(tmp_path / "repo", clock=SimClock())
    m.register_database("t", src)
    full = m.backup("t", BackupType.FULL)
    # block, other, the 4-byte tail, one zero block.
    assert own_blocks(m, full.id) == 4
    m.restore("t", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)
    report = Verifier(m).verify("t", VerificationType.RESTORE_TEST)
    assert report.ok, report.findings


def test_a_damaged_shared_block_is_reported_for_every_file_using_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shared = os.urandom(BS)
    for name in ("one", "two", "three"):
        (src / name).write_bytes(shared + name.encode() * 100)
    m = BackupManager(tmp_path / "repo", clock=SimClock())
    m.register_database("t", src, compression=None)
    full = m.backup("t", BackupType.FULL)
    piece = tmp_path / "repo" / m.set_manifest(full.id).pieces[0].path
    data = bytearray(piece.read_bytes())
    # The first block written is the shared one, raw, right after the 32-byte header.
    assert data[32 : 32 + 16] == shared[:16]
    data[40] ^= 0xFF
    piece.write_bytes(bytes(data))
    report = Verifier(m).verify("t", VerificationType.RESTORE_TEST)
    assert not report.ok
    assert sorted({b.file for b in report.corrupt_blocks}) == ["one", "three", "two"]


def test_retention_keeps_the_set_a_kept_set_refers_to(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(1 << 20))
    clock = SimClock()
    m = BackupManager(tmp_path / "repo", clock=clock)
    m.register_database("t", src)
    full = m.backup("t", BackupType.FULL)
    (src / "big").rename(src / "moved")  # same bytes, another name: all references
    clock.advance(hours=1)
    inc = m.backup("t", BackupType.INCREMENTAL)
    assert own_blocks(m, inc.id) == 0
    clock.advance(hours=1)
    assert m.apply_retention("t", RetentionPolicy.keep(last=1), dry_run=False) == []
    kept = {s.id for s in m.catalog.list_sets("t")}
    assert {full.id, inc.id} <= kept
    m.restore("t", tmp_path / "out", backup_set_id=inc.id)
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)


def test_database_sources_compare_by_position_only(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "x.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA page_size = 8192")
        c.execute("CREATE TABLE t (v BLOB)")
        c.executemany("INSERT INTO t VALUES (?)", [(b"\0" * 3000,)] * 200)
    m = BackupManager(tmp_path / "repo", clock=SimClock())
    m.register_database("d", db, kind="sqlite")
    full = m.backup("d", BackupType.FULL)
    pages = db.stat().st_size // BS
    # Identical pages are stored as often as they occur: no dedup for databases.
    assert own_blocks(m, full.id) == pages


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=6), min_size=1, max_size=5),
    tails=st.lists(st.integers(0, BS - 1), min_size=5, max_size=5),
    second=st.lists(st.lists(st.integers(0, 7), min_size=0, max_size=6), min_size=1, max_size=5),
)
def test_files_built_of_shared_blocks_round_trip(
    tmp_path_factory: pytest.TempPathFactory, layout: list[list[int]], tails: list[int], second: list[list[int]]
) -> None:
    """Files made of a few distinct blocks in any order (plus a short tail), then a second
    generation drawing on more blocks: each backup stores each distinct block at most
    once (the oracle: the set of distinct (block, length) pairs not stored before) and
    restores every file byte for byte."""
    base = tmp_path_factory.mktemp("dd")
    src = base / "src"
    src.mkdir()
    blocks = [os.urandom(BS) for _ in range(8)]
    m = BackupManager(base / "repo", clock=SimClock())
    m.register_database("t", src)
    seen: set[bytes] = set()
    for gen, files in enumerate([layout, second]):
        for p in src.iterdir():
            p.unlink()
        distinct: set[bytes] = set()
        for i, ids in enumerate(files):
            tail = blocks[(i + gen) % 8][: tails[i]]
            body = b"".join(blocks[k] for k in ids) + tail
            (src / f"f{i}").write_bytes(body)
            for k in range(0, len(body), BS):
                distinct.add(body[k : k + BS])
        s = m.backup("t", BackupType.INCREMENTAL)
        assert own_blocks(m, s.id) == len(distinct - seen)
        seen |= distinct
        out = base / f"out{gen}"
        m.restore("t", out, backup_set_id=s.id)
        assert snapshot_tree(out) == snapshot_tree(src)
