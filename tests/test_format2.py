"""Format 2 through the public API: new pieces are written in version 2 with an XXH3-128
tree of their bytes in the trailer (checked here against the `xxhash` package, an
independent implementation), STANDARD verification finds bit rot through it, and a repository that
holds both versions restores chains that cross them (the format-1 fixture with new sets
taken on top of its sets)."""

from __future__ import annotations

import random
import shutil
import sqlite3
import struct
from pathlib import Path

import blake3
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, VerificationType
from rustybackup.verify import Verifier
from test_format1_fixture import EXPECTED, FIXTURE, _found
from verify_support import XXH3_TREE_CHUNK, Repo, xxh3_tree

PIECE_TRAILER = 112


def piece_fields(data: bytes) -> tuple[int, bytes, bytes]:
    """(version, XXH3-128, checksum) of a piece, read straight from its bytes."""
    version = struct.unpack_from("<I", data, 8)[0]
    trailer = data[-PIECE_TRAILER:]
    assert trailer[:8] == b"RBTRAIL\0"
    digest_len = trailer[24]
    return version, trailer[32:48], trailer[48 : 48 + digest_len]


@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=4),
    block_size=st.sampled_from([512, 4096]),
    compression=st.sampled_from([None, "zstd"]),
    seed=st.integers(0, 2**32),
)
def test_a_new_piece_is_version_2_and_its_xxh3_is_that_of_its_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    block_size: int,
    compression: str | None,
    seed: int,
) -> None:
    root = tmp_path_factory.mktemp("f2")
    rnd = random.Random(seed)
    src = root / "src"
    src.mkdir()
    for i, n in enumerate(sizes):
        # Half random, half repeated: some blocks compress, some do not.
        (src / f"f{i}").write_bytes(rnd.randbytes(n // 2) + bytes([i]) * (n - n // 2))
    manager = BackupManager(root / "repo")
    manager.register_database("db", src, block_size=block_size, compression=compression, algorithm="blake3")
    s = manager.backup("db", "full")
    for p in s.pieces:
        data = (manager.repository / p.path).read_bytes()
        version, fast, checksum = piece_fields(data)
        assert version == 2
        covered = data[:-PIECE_TRAILER]
        assert fast == xxh3_tree(covered)
        assert checksum == blake3.blake3(covered).digest()
        assert checksum.hex() == p.checksum


def test_standard_finds_a_flipped_data_byte_by_the_xxh3(tmp_path: Path) -> None:
    repo = Repo(tmp_path, files=2, size=50_000)
    s = repo.backup("full")
    verifier = Verifier(repo.manager)
    assert verifier.verify(s.id, VerificationType.STANDARD).ok
    repo.flip(repo.piece(s), 32 + 5000)
    report = verifier.verify(s.id, VerificationType.STANDARD)
    assert not report.ok
    assert any("XXH3-128" in f.message for f in report.findings), report.findings


def test_the_xxh3_tree_of_a_piece_of_several_chunks(tmp_path: Path) -> None:
    """A piece over two chunk boundaries: the trailer holds the tree the oracle computes
    (not the XXH3 of the whole), STANDARD passes, and a bit flipped in the last chunk,
    the first, or the trailer's tree field is found by STANDARD and by FULL."""
    repo = Repo(tmp_path, files=1, size=2 * XXH3_TREE_CHUNK + 70_000, block_size=65536)
    s = repo.backup("full")
    path = repo.piece(s)
    data = path.read_bytes()
    covered = data[:-PIECE_TRAILER]
    assert len(covered) > 2 * XXH3_TREE_CHUNK
    fast = piece_fields(data)[1]
    assert fast == xxh3_tree(covered)
    assert fast != xxhash.xxh3_128(covered).digest()
    verifier = Verifier(repo.manager)
    assert verifier.verify(s.id, VerificationType.STANDARD).ok
    for at in (2 * XXH3_TREE_CHUNK + 100, 40, len(data) - PIECE_TRAILER + 32 + 7):
        repo.flip(path, at)
        for level in (VerificationType.STANDARD, VerificationType.FULL):
            report = verifier.verify(s.id, level)
            assert not report.ok, (at, level)
        repo.flip(path, at)
    assert verifier.verify(s.id, VerificationType.FULL).ok


def _retarget(repo: Path, database: str, path: Path) -> None:
    """Points the copied fixture's database at a live source (its original path is gone)."""
    con = sqlite3.connect(repo / "catalog.db")
    with con:
        con.execute("UPDATE databases SET path = ? WHERE name = ?", (str(path), database))
    con.close()


def test_a_chain_that_crosses_format_1_and_format_2_restores(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE / "repo", repo, symlinks=True)
    manager = BackupManager(repo)
    newest = max(EXPECTED["tree"])
    src = tmp_path / "src"
    manager.restore("tree", src, backup_set_id=newest)
    _retarget(repo, "tree", src)
    manager = BackupManager(repo)
    changed = next(p for p in sorted(src.rglob("*")) if p.is_file() and not p.is_symlink() and p.stat().st_size)
    with open(changed, "r+b") as f:
        f.write(b"format two was here")
    (src / "new-in-v2.bin").write_bytes(bytes(range(256)) * 100)
    inc = manager.backup("tree", "incremental")
    assert inc.parent_id == newest
    diff = manager.backup("tree", "differential")
    (src / "new-in-v2.bin").unlink()
    inc2 = manager.backup("tree", "incremental")
    want = _found(src)
    for s in (inc, diff, inc2):
        version = piece_fields((repo / s.pieces[0].path).read_bytes())[0]
        assert version == 2
    expect_new = {}
    (src / "new-in-v2.bin").write_bytes(bytes(range(256)) * 100)
    expect_new[inc.id] = _found(src)
    expect_new[diff.id] = _found(src)
    (src / "new-in-v2.bin").unlink()
    expect_new[inc2.id] = want
    for sid, files in expect_new.items():
        target = tmp_path / ("r-" + sid)
        manager.restore("tree", target, backup_set_id=sid)
        assert _found(target) == files, sid
    # The format-1 sets still restore beside them, byte for byte.
    for sid, files in EXPECTED["tree"].items():
        target = tmp_path / ("old-" + sid)
        manager.restore("tree", target, backup_set_id=sid)
        assert _found(target) == files, sid
    for level in (VerificationType.STANDARD, VerificationType.FULL):
        report = Verifier(manager).verify(None, level)
        assert report.ok, report.findings


def test_a_block_map_grows_with_what_changed_not_with_the_tree(tmp_path: Path) -> None:
    """An unchanged INCREMENTAL's map is one reference run; one changed block adds one
    stored record and at most two run headers (docs/FORMAT.md "Block map, version 2")."""
    repo = Repo(tmp_path, files=3, size=200_000, block_size=4096)
    repo.backup("full")
    same = repo.backup("incremental")
    bmap = repo.manager.repository / same.blockmap
    assert bmap.stat().st_size == 32 + 24 + 296
    before = {f.name: f.read_bytes() for f in repo.src.iterdir()}
    repo.touch("f1.bin", at=4096 * 7 + 5)
    one = repo.backup("incremental")
    size = (repo.manager.repository / one.blockmap).stat().st_size
    record = 21 + 32
    # Runs: files f0 and f1's first blocks, the stored block, the rest of f1 and f2.
    assert size == 32 + 296 + record + 3 * 24
    after = {f.name: f.read_bytes() for f in repo.src.iterdir()}
    assert before != after
    for s, want in ((same, before), (one, after)):
        target = tmp_path / ("r-" + s.id)
        repo.manager.restore("db", target, backup_set_id=s.id)
        assert {f.name: f.read_bytes() for f in target.iterdir()} == want, s.id
