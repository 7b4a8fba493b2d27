"""Copy runs and cross-file references in the block map (issue 17, docs/FORMAT.md "Block
map, version 4"): a block equal to one whose map record the new map can name (an
earlier record of the same map, or a record of the parent's map) is written as a
reference, and consecutive references join into one 24-byte run, so a file copied
inside the tree adds a run header to the next backup, not a record per block.

The oracle is the source tree (its bytes, hashed here with hashlib) and a plain-Python
reader of the block map written from docs/FORMAT.md, never what rustybackup reports."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from engine_support import SimClock, snapshot_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, BackupType, RetentionPolicy, RustyBackupError, VerificationType, _core
from rustybackup.restore import RestoreOptions
from rustybackup.verify import Verifier

BS = 4096
HEADER = 32
TRAILER = 296
SUM_AT = 232
RUN = 24
RECORD = 21 + 32  # sha256 and blake3 digests are 32 bytes
STORED, PARENT, HOLE, COPY = 1, 2, 3, 4


@dataclass(frozen=True)
class Map:
    """A block map as docs/FORMAT.md lays it out: version, runs (offset, kind, count,
    first or last length, records of a stored run) and the parent map's path."""

    path: Path
    version: int
    count: int
    stored: int
    runs: list[tuple[int, int, int, int, list[tuple[bytes, int]]]]
    parent: Path | None


def parse(path: Path) -> Map:
    b = path.read_bytes()
    version = struct.unpack_from("<I", b, 8)[0]
    assert version in (2, 3, 4)
    t = len(b) - TRAILER
    count, nruns, stored = struct.unpack_from("<QQQ", b, t + 8)
    plen = b[t + 33]
    parent = path.parent / b[t + 104 : t + 104 + plen].decode() if plen else None
    runs, at = [], HEADER
    while at < t:
        kind, n, first = b[at], *struct.unpack_from("<QQ", b, at + 8)
        recs = []
        if kind == STORED:
            for k in range(n):
                r = at + RUN + k * RECORD
                recs.append((b[r + 21 : r + RECORD], struct.unpack_from("<I", b, r + 16)[0]))
        runs.append((at, kind, n, first, recs))
        at += RUN + (n * RECORD if kind == STORED else 0)
    assert at == t and len(runs) == nruns
    return Map(path, version, count, stored, runs, parent)


def state(path: Path) -> list[tuple[bytes | None, int]]:
    """Every record of the map's state as (digest, raw length), None for a hole:
    the reference model of how runs resolve."""
    m = parse(path)
    parent = state(m.parent.resolve()) if m.parent else []
    out: list[tuple[bytes | None, int]] = []
    for _, kind, n, first, recs in m.runs:
        if kind == STORED:
            out += recs
        elif kind == PARENT:
            assert first + n <= len(parent)
            out += parent[first : first + n]
        elif kind == HOLE:
            out += [(None, BS)] * (n - 1) + [(None, first)]
        else:
            assert kind == COPY and m.version >= 4
            # Backwards only: every record named lies before the run.
            assert first + n <= len(out)
            out += out[first : first + n]
    assert len(out) == m.count
    return out


def expected_state(m: BackupManager, set_id: str, src: Path) -> list[tuple[bytes, int]]:
    """The state the set must describe: each file's blocks hashed here, in manifest order."""
    out: list[tuple[bytes, int]] = []
    for f in sorted(m.set_manifest(set_id).files, key=lambda f: f.first_block):
        data = (src / f.path).read_bytes()
        assert len(out) == f.first_block
        out += [(hashlib.sha256(data[k : k + BS]).digest(), len(data[k : k + BS])) for k in range(0, len(data), BS)]
        assert len(out) == f.first_block + f.block_count
    return out


def manager(tmp: Path, src: Path) -> BackupManager:
    m = BackupManager(tmp / "repo", clock=SimClock())
    m.register_database("t", src, block_size=BS, algorithm="sha256")
    return m


def blockmap(tmp: Path, set_id: str) -> Path:
    return tmp / "repo" / "sets" / set_id / "blockmap"


def test_copies_inside_one_backup_are_copy_runs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    n = 200
    (src / "big").write_bytes(os.urandom(n * BS + 123))
    # One copy before the original in the walk's order, one after, one in a directory.
    for name in ("a-copy", "big-copy", "sub/again"):
        (src / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(src / "big", src / name)
    m = manager(tmp_path, src)
    full = m.backup("t", BackupType.FULL).id
    bm = parse(blockmap(tmp_path, full))
    assert bm.version == 4
    # One file's records, and one copy run for each of the three others.
    assert bm.stored == n + 1
    assert [k for _, k, _, _, _ in bm.runs].count(COPY) == 3
    assert bm.path.stat().st_size <= HEADER + TRAILER + (n + 1) * RECORD + 8 * RUN
    assert state(bm.path) == expected_state(m, full, src)
    m.restore("t", tmp_path / "out")
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)
    m.restore_files(full, ["sub/again"], tmp_path / "part")
    assert (tmp_path / "part" / "sub" / "again").read_bytes() == (src / "big").read_bytes()
    assert not (tmp_path / "part" / "big").exists()
    for level in (VerificationType.QUICK, VerificationType.STANDARD, VerificationType.FULL):
        report = Verifier(m).verify("t", level)
        assert report.ok, (level, report.findings)


@pytest.mark.parametrize("n", [64, 512])
def test_a_copied_file_adds_o1_records_to_the_next_backup(tmp_path: Path, n: int) -> None:
    """The incremental after `cp big big-copy` (and a copy sorting before `big`) holds
    no stored record and a few run headers, whatever the file's size."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(n * BS))
    (src / "small").write_bytes(b"x" * 100)
    m = manager(tmp_path, src)
    full = m.backup("t", BackupType.FULL).id
    first = tmp_path / "first"
    m.restore("t", first)
    shutil.copyfile(src / "big", src / "big-copy")
    shutil.copyfile(src / "big", src / "a-copy")
    inc = m.backup("t", BackupType.INCREMENTAL).id
    bm = parse(blockmap(tmp_path, inc))
    assert bm.parent is not None and bm.parent.parent.name == full
    assert bm.stored == 0
    assert len(bm.runs) <= 4
    assert bm.path.stat().st_size <= HEADER + TRAILER + 4 * RUN
    assert state(bm.path) == expected_state(m, inc, src)
    m.restore("t", tmp_path / "out", backup_set_id=inc)
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)
    # A delta restore over the full's restore writes the copies from the references.
    m.restore("t", first, backup_set_id=inc, options=RestoreOptions(delta=True))
    assert snapshot_tree(first) == snapshot_tree(src)
    for level in (VerificationType.QUICK, VerificationType.STANDARD, VerificationType.FULL):
        report = Verifier(m).verify("t", level)
        assert report.ok, (level, report.findings)


def test_retention_keeps_the_set_a_copys_references_resolve_in(tmp_path: Path) -> None:
    """References name only the map's own records and its parent chain's, which the
    chain rules keep with the set (rust/src/chain/retention.rs): a retention run keeping
    the newest set keeps the full its parent runs resolve in, and it restores."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(100 * BS))
    clock = SimClock()
    m = BackupManager(tmp_path / "repo", clock=clock)
    m.register_database("t", src, block_size=BS, algorithm="sha256")
    full = m.backup("t", BackupType.FULL).id
    (src / "big").rename(src / "moved")
    shutil.copyfile(src / "moved", src / "copy")
    clock.advance(hours=1)
    inc = m.backup("t", BackupType.INCREMENTAL).id
    assert parse(blockmap(tmp_path, inc)).stored == 0
    clock.advance(hours=1)
    assert m.apply_retention("t", RetentionPolicy.keep(last=1), dry_run=False) == []
    assert {full, inc} <= {s.id for s in m.catalog.list_sets("t")}
    m.restore("t", tmp_path / "out", backup_set_id=inc)
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)
    # With a newer full, the old chain may go: the new full stands alone.
    clock.advance(hours=1)
    new = m.backup("t", BackupType.FULL).id
    clock.advance(hours=1)
    assert sorted(m.apply_retention("t", RetentionPolicy.keep(last=1), dry_run=False)) == sorted([full, inc])
    m.restore("t", tmp_path / "again", backup_set_id=new)
    assert snapshot_tree(tmp_path / "again") == snapshot_tree(src)


def crafted(tmp_path: Path, change: tuple[int, int], version: int | None = None) -> tuple[BackupManager, Path, int]:
    """A full whose first copy run's field at `change[0]` (8: count, 16: first) gets
    `change[1]` added (or the header's version set), the checksum recomputed so only
    the structure is wrong; returns the run header's offset."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(8 * BS))
    shutil.copyfile(src / "a", src / "b")
    (src / "c").write_bytes(os.urandom(3 * BS))
    m = manager(tmp_path, src)
    sid = m.backup("t", BackupType.FULL).id
    path = blockmap(tmp_path, sid)
    at = next(a for a, k, _, _, _ in parse(path).runs if k == COPY)
    b = bytearray(path.read_bytes())
    field, delta = change
    (v,) = struct.unpack_from("<Q", b, at + field)
    struct.pack_into("<Q", b, at + field, (v + delta) % (1 << 64))
    if version is not None:
        struct.pack_into("<I", b, 8, version)
    end = len(b) - TRAILER
    b[end + SUM_AT : end + SUM_AT + 32] = bytes.fromhex(_core.hash_bytes(bytes(b[:end]), "sha256"))
    os.chmod(path, 0o644)
    path.write_bytes(bytes(b))
    return m, path, at


@pytest.mark.parametrize(
    ("change", "version", "where", "what"),
    [
        # The copy names records 1..9: its own first record (8) among them.
        ((16, 1), None, 16, "copy of records 1..9 does not lie before the run's first record 8"),
        ((16, 1 << 62), None, 16, "does not lie before the run's first record 8"),
        ((16, -1), None, 16, "copy of records 18446744073709551615.."),
        ((8, 1 << 62), None, 16, "does not lie before"),
        ((8, -1), None, None, "the runs cover 18 records"),
        # Kind 4 in a version-3 map (the header's version set back).
        ((0, 0), 3, 0, "unknown kind 4"),
    ],
)
def test_a_damaged_copy_run_is_refused_naming_the_map_and_offset(
    tmp_path: Path, change: tuple[int, int], version: int | None, where: int | None, what: str
) -> None:
    m, path, at = crafted(tmp_path, change, version)
    with pytest.raises(RustyBackupError) as e:
        m.restore("t", tmp_path / "out")
    msg = str(e.value)
    assert str(path) in msg and what in msg, msg
    if where is not None:
        assert f"at offset {at + where}" in msg, msg
    report = Verifier(m).verify("t", VerificationType.STANDARD)
    assert not report.ok
    assert what in str(report.findings), report.findings


blocks_strategy = st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=8), min_size=1, max_size=4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=blocks_strategy,
    copies=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["0", "m", "z/z"])), max_size=4),
    later=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["1", "n", "y/y"])), max_size=4),
    tail=st.integers(0, BS - 1),
)
def test_random_trees_of_copies_resolve_to_their_blocks(
    tmp_path_factory: pytest.TempPathFactory,
    files: list[list[int]],
    copies: list[tuple[int, str]],
    later: list[tuple[int, str]],
    tail: int,
) -> None:
    """Files of a few shared blocks, copies of them in the same backup, and more copies
    before an incremental: the Python reader's state of each map equals the tree's
    blocks hashed here, the maps grow by no stored record for a copy, and restores are
    byte-identical."""
    base = tmp_path_factory.mktemp("refs")
    src = base / "src"
    src.mkdir()
    pool = [os.urandom(BS) for _ in range(6)]
    names = []
    for i, ids in enumerate(files):
        names.append(f"f{i}")
        (src / names[-1]).write_bytes(b"".join(pool[k] for k in ids) + pool[i % 6][:tail])

    def copy(pairs: list[tuple[int, str]]) -> None:
        for k, name in pairs:
            dst = src / f"{name}-{k}"
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(src / names[k % len(names)], dst)

    copy(copies)
    m = manager(base, src)
    distinct = {
        p.read_bytes()[k : k + BS] for p in src.rglob("*") if p.is_file() for k in range(0, p.stat().st_size, BS)
    }
    full = m.backup("t", BackupType.FULL).id
    first = snapshot_tree(src)
    assert parse(blockmap(base, full)).stored == len(distinct)
    assert state(blockmap(base, full)) == expected_state(m, full, src)
    copy(later)
    inc = m.backup("t", BackupType.INCREMENTAL).id
    assert parse(blockmap(base, inc)).stored == 0
    assert state(blockmap(base, inc)) == expected_state(m, inc, src)
    for sid, tree in ((full, first), (inc, snapshot_tree(src))):
        out = base / f"out-{sid}"
        m.restore("t", out, backup_set_id=sid)
        assert snapshot_tree(out) == tree


def test_a_resumed_backup_writes_the_copy_runs_of_an_uninterrupted_one(tmp_path: Path) -> None:
    """A pass cut after its first files resumes with the adopted blocks indexed under
    their records, so a later copy of an adopted file is the same copy run an
    uninterrupted pass writes: the block maps are byte for byte the same."""
    import threading

    from rustybackup.engine import BackupProgress
    from rustybackup.errors import BackupCancelled

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"a{i}").write_bytes(os.urandom(3 << 20))
    shutil.copyfile(src / "a0", src / "z-copy")
    m = manager(tmp_path / "cut", src)
    m.checkpoint_every = 0  # every finished file is kept for the next run
    flag = threading.Event()

    def progress(p: BackupProgress) -> None:
        if p.files_done >= 2:
            flag.set()

    with pytest.raises(BackupCancelled):
        m.backup("t", BackupType.FULL, progress=progress, cancel=flag)
    done = m.backup("t", BackupType.FULL)
    assert m.resumed[done.id].files >= 2
    ref = manager(tmp_path / "ref", src)
    fresh = ref.backup("t", BackupType.FULL)
    assert m.catalog.get_set(done.id).blockmap_checksum == fresh.blockmap_checksum
    bm = parse(blockmap(tmp_path / "cut", done.id))
    assert [k for _, k, _, _, _ in bm.runs].count(COPY) == 1
    assert state(bm.path) == expected_state(m, done.id, src)
    m.restore("t", tmp_path / "out", backup_set_id=done.id)
    assert snapshot_tree(tmp_path / "out") == snapshot_tree(src)
