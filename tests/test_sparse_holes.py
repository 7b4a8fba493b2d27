"""Sparse files as hole runs in the block map (issue 17, docs/FORMAT.md "Block map
version 3"): a run of hole blocks is one run header, found with SEEK_DATA/SEEK_HOLE and
never read, and restored by not writing, so the restored file has the source's holes.
The oracle is what the file system says (os.lseek SEEK_DATA/SEEK_HOLE, st_blocks) and
the bytes, never what rustybackup recorded; the block map is parsed here by hand."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from fidelity_support import sparse_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, RustyBackupError, _core
from rustybackup.restore import RestoreOptions

BS = 4096
HEADER = 32
TRAILER = 296
SUM_AT = 232
RUN = 24
RECORD = 21 + 32  # blake3


def extents(path: Path) -> list[tuple[int, int]]:
    """The data extents [start, end) the file system reports."""
    out = []
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fd = fh.fileno()
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, min(hole, size)))
            pos = hole
    return out


def supports_holes(d: Path) -> bool:
    p = d / ".probe"
    sparse_file(p, [("hole", 1 << 20), ("data", 10)])
    ok = extents(p) != [(0, (1 << 20) + 10)]
    p.unlink()
    return ok


def runs(blockmap: Path) -> list[tuple[int, int, int, int]]:
    """(offset, kind, count, last field) of every run header of a version-3 map (or 4:
    version 3's runs and copy runs, kind 4, also header-only)."""
    b = blockmap.read_bytes()
    assert struct.unpack_from("<I", b, 8)[0] in (3, 4)
    out, at, end = [], HEADER, len(b) - TRAILER
    while at < end:
        kind, count, first = b[at], *struct.unpack_from("<QQ", b, at + 8)
        out.append((at, kind, count, first))
        at += RUN + (count * RECORD if kind == 1 else 0)
    assert at == end
    return out


def repo(tmp: Path, src: Path, block_size: int = BS) -> BackupManager:
    m = BackupManager(tmp / "repo")
    m.register_database("t", src, block_size=block_size)
    return m


@pytest.fixture(autouse=True)
def _holes(tmp_path: Path) -> None:
    if not supports_holes(tmp_path):
        pytest.skip("the file system under the tests keeps no holes")


layouts = st.lists(
    st.tuples(st.sampled_from(["data", "hole"]), st.integers(1, 6).map(lambda n: n * BS)), min_size=1, max_size=6
).flatmap(lambda runs_: st.tuples(st.just(runs_), st.integers(0, BS - 1)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layouts)
def test_random_sparse_files_round_trip_with_their_holes(
    tmp_path: Path, case: tuple[list[tuple[str, int]], int]
) -> None:
    layout, tail = case
    d = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
    src = d / "src"
    src.mkdir(parents=True)
    if tail:
        layout = [*layout, ("data", tail)]
    sparse_file(src / "f", layout)
    m = repo(d, src)
    sid = m.backup("t", "full").id
    out = d / "out"
    m.restore("t", out)
    assert (out / "f").read_bytes() == (src / "f").read_bytes()
    assert extents(out / "f") == extents(src / "f")
    assert os.stat(out / "f").st_blocks == os.stat(src / "f").st_blocks
    # Every hole block of the source is in a hole run, none is a stored record.
    hole_blocks = sum(c for _, k, c, _ in runs(d / "repo" / "sets" / sid / "blockmap") if k == 3)
    size = (src / "f").stat().st_size
    data_blocks = {b for s, e in extents(src / "f") for b in range(s // BS, -(-e // BS))}
    assert hole_blocks == -(-size // BS) - len(data_blocks)


def test_incrementals_carry_hole_to_data_and_data_to_hole_and_delta_punches(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sparse_file(src / "f", [("data", 4 * BS), ("hole", 8 * BS), ("data", BS), ("hole", 3 * BS)])
    m = repo(tmp_path, src)
    full = m.backup("t", "full").id
    first = tmp_path / "first"
    m.restore("t", first, backup_set_id=full)
    # sparse_file's bytes depend on the position only: blocks 1..3 go from data to a
    # hole, 6..7 from a hole to data, 12 stays, and the tail hole grows.
    sparse_file(
        src / "g", [("data", BS), ("hole", 5 * BS), ("data", 2 * BS), ("hole", 4 * BS), ("data", BS), ("hole", 40 * BS)]
    )
    os.replace(src / "g", src / "f")
    inc = m.backup("t", "incremental").id
    second = tmp_path / "second"
    m.restore("t", second, backup_set_id=inc)
    assert (second / "f").read_bytes() == (src / "f").read_bytes()
    assert extents(second / "f") == extents(src / "f")
    assert [k for _, k, _, _ in runs(tmp_path / "repo" / "sets" / inc / "blockmap")].count(3) >= 2
    # A delta restore over the full's restore punches where the source has holes now.
    m.restore("t", first, backup_set_id=inc, options=RestoreOptions(delta=True))
    assert (first / "f").read_bytes() == (src / "f").read_bytes()
    assert extents(first / "f") == extents(src / "f")
    assert os.stat(first / "f").st_blocks == os.stat(src / "f").st_blocks
    # And the full still restores as it was.
    again = tmp_path / "again"
    m.restore("t", again, backup_set_id=full)
    assert extents(again / "f") == [(0, 4 * BS), (12 * BS, 13 * BS)]


def test_a_64_gib_sparse_file_costs_metadata_in_its_data_extents(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 64 << 30
    with open(src / "big", "wb") as fh:
        for at in (0, 5 << 30, 40 << 30, size - BS):
            fh.seek(at)
            fh.write(os.urandom(BS))
    m = repo(tmp_path, src, block_size=1 << 20)
    s = m.backup("t", "full")
    sets = tmp_path / "repo" / "sets" / s.id
    # Four stored blocks and a handful of runs, whatever the 65,536 blocks of the file.
    assert (sets / "blockmap").stat().st_size < 4 << 10
    assert (sets / "data.piece").stat().st_size < 5 << 20
    assert s.bytes_read <= 4 << 20
    out = tmp_path / "out"
    m.restore("t", out)
    st_ = os.stat(out / "big")
    assert st_.st_size == size and st_.st_blocks * 512 <= 8 << 20
    assert extents(out / "big") == extents(src / "big")
    with open(out / "big", "rb") as a, open(src / "big", "rb") as b:
        for at in (0, 5 << 30, 40 << 30, size - BS):
            a.seek(at)
            b.seek(at)
            assert a.read(BS) == b.read(BS)


def damaged(tmp_path: Path, change: tuple[int, int, int]) -> tuple[BackupManager, Path, int]:
    """A set whose first hole run's field at `change[0]` (8: count, 16: last length)
    gets `change[1]` added (and its kind byte `change[2]` if not zero), its checksum
    recomputed so only the structure is wrong; returns the header's offset."""
    src = tmp_path / "src"
    src.mkdir()
    sparse_file(src / "f", [("data", BS), ("hole", 8 * BS), ("data", BS), ("hole", 2 * BS), ("data", 10)])
    m = repo(tmp_path, src)
    sid = m.backup("t", "full").id
    bm = tmp_path / "repo" / "sets" / sid / "blockmap"
    at = next(a for a, k, _, _ in runs(bm) if k == 3)
    b = bytearray(bm.read_bytes())
    field, delta, kind = change
    (v,) = struct.unpack_from("<Q", b, at + field)
    struct.pack_into("<Q", b, at + field, v + delta)
    if kind:
        b[at] = kind
    end = len(b) - TRAILER
    b[end + SUM_AT : end + SUM_AT + 32] = bytes.fromhex(_core.hash_bytes(bytes(b[:end]), "blake3"))
    os.chmod(bm, 0o644)
    bm.write_bytes(bytes(b))
    return m, bm, at


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        ((16, BS, 0), 16, "hole's last block of 8192 bytes is outside 1..=4096"),
        ((16, -BS, 0), 16, "hole's last block of 0 bytes is outside"),
        ((8, 3, 0), None, "records"),
        ((8, 1 << 62, 0), 8, "overruns the block map"),
    ],
)
def test_a_damaged_hole_run_is_refused_naming_the_map_and_offset(
    tmp_path: Path, change: tuple[int, int, int], where: int | None, what: str
) -> None:
    m, bm, at = damaged(tmp_path, change)
    with pytest.raises(RustyBackupError) as e:
        m.restore("t", tmp_path / "out")
    msg = str(e.value)
    assert str(bm) in msg and what in msg
    if where is not None:
        assert f"at offset {at + where}" in msg


def test_verification_of_a_sparse_set_passes_and_finds_data_written_into_a_hole(tmp_path: Path) -> None:
    from rustybackup import VerificationType
    from rustybackup.verify import Verifier

    src = tmp_path / "src"
    src.mkdir()
    sparse_file(src / "f", [("data", BS), ("hole", 64 * BS), ("data", BS), ("hole", 8 * BS)])
    m = repo(tmp_path, src)
    sid = m.backup("t", "full").id
    for level in (VerificationType.FULL, VerificationType.RESTORE_TEST):
        report = Verifier(m).verify("t", level)
        assert report.ok, (level, report.findings)
    # RESTORE_TEST's check of a restored file: a hole block holding data is a mismatch.
    man = m.set_manifest(sid)
    f = man.files[0]
    restored = tmp_path / "restored"
    m.restore("t", restored)
    blockmap = tmp_path / "repo" / "sets" / sid / "blockmap"

    def check() -> _core.RestoredFileCheck:
        return _core.check_restored(
            restored / "f", "blake3", f.digest, blockmap=blockmap, first_block=f.first_block, block_count=f.block_count
        )

    assert check().matches
    with open(restored / "f", "r+b") as fh:
        fh.seek(10 * BS)
        fh.write(b"\x01")
    bad = check()
    assert not bad.matches and "data where the block map records a hole" in bad.notes
