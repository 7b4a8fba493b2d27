"""Damaged pieces and block maps through the public API: a small real repository is
backed up, one of its two format files is damaged (truncations, single-byte changes,
random multi-byte changes, huge length and count fields), and then FULL
verification must report the set as damaged and a restore must either fail with a
BackupError naming the damaged file or give back exactly the original bytes. Nothing may
crash the process. The exhaustive walk (every length, every byte, three values each) is
done in Rust (rust/src/format/mutation.rs), where it is cheap; here, through the whole
Python stack, every byte of the headers, of the first record and of the trailer fields
of both files is changed (and cut at), and every fifth byte elsewhere."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest
from engine_support import SimClock
from hypothesis import given
from hypothesis import strategies as st
from rustybackup import BackupError, BackupManager
from rustybackup.verify import Verifier
from verify_support import xxh3_tree

BLOCK = 512
# Pieces are written in format 2: index offset, entry count, checksum length and padding,
# the XXH3-128 at 32, the checksum at 48. Block maps too: after the header a 24-byte run
# header, then the run's records; the trailer's checksum is at 232.
PIECE_TRAILER = 112
PIECE_FAST_AT = 32
PIECE_SUM_AT = 48
MAP_TRAILER = 296
MAP_SUM_AT = 232
RECORD = 32 + 24


@dataclass
class Damaged:
    """A backed-up set whose piece and block map the tests rewrite and put back."""

    manager: BackupManager
    set_id: str
    piece: Path
    blockmap: Path
    original: dict[Path, bytes]
    data: bytes
    out: Path
    verifier: Verifier
    restores: int = 0

    def write(self, path: Path, content: bytes) -> None:
        path.write_bytes(content)

    def restore(self) -> bytes | BackupError:
        """Restores the set into a fresh directory: the bytes of its one file, or the error."""
        self.restores += 1
        target = self.out / str(self.restores)
        try:
            self.manager.restore("db", target, backup_set_id=self.set_id)
        except BackupError as exc:
            return exc
        content = (target / "f.bin").read_bytes()
        shutil.rmtree(target)
        return content

    def verify_full_fails(self) -> None:
        report = self.verifier.verify(self.set_id, "full")
        self._reset_status()
        assert not report.ok, "FULL verification says OK for a damaged file"
        texts = [f.message for f in report.findings] + [b.piece for b in report.corrupt_blocks]
        assert any(self.piece.name in t or "blockmap" in t for t in texts), texts

    def _reset_status(self) -> None:
        # A FULL verification marks the set corrupt (and a restore then refuses it); put
        # it back so the next case is judged on the bytes alone.
        conn = sqlite3.connect(self.manager.repository / "catalog.db")
        # A test catalog: no fsync per reset.
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.execute("UPDATE sets SET status = 'available' WHERE id = ?", (self.set_id,))
        conn.close()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Damaged]:
    root = tmp_path_factory.mktemp("format-mutation")
    src = root / "src"
    src.mkdir()
    # Three blocks: one zstd shrinks, one it cannot, and a short last one.
    data = bytes(BLOCK) + os.urandom(BLOCK) + os.urandom(100)
    (src / "f.bin").write_bytes(data)
    manager = BackupManager(root / "repo", clock=SimClock())
    manager.register_database("db", src, block_size=BLOCK, compression="zstd")
    s = manager.backup("db", "full")
    set_dir = manager.repository / "sets" / s.id
    piece, blockmap = set_dir / "data.piece", set_dir / "blockmap"
    original = {piece: piece.read_bytes(), blockmap: blockmap.read_bytes()}
    out = root / "out"
    out.mkdir()
    d = Damaged(manager, s.id, piece, blockmap, original, data, out, Verifier(manager))
    assert d.restore() == data
    yield d


@pytest.fixture
def fresh(damaged: Damaged) -> Iterator[Damaged]:
    yield damaged
    for path, content in damaged.original.items():
        path.write_bytes(content)


def judge_restore(d: Damaged, damaged_file: Path, what: str) -> None:
    got = d.restore()
    if isinstance(got, bytes):
        assert got == d.data, f"{what}: restore gave wrong bytes without an error"
        return
    msg = str(got)
    assert msg.startswith(f"restore of set {d.set_id} failed: "), f"{what}: {msg}"
    # The message names the file that holds the damage (or the piece a bad record sent it to).
    assert str(damaged_file) in msg or str(d.piece) in msg, f"{what}: {msg}"
    assert "offset" in msg or "checksum mismatch over bytes 0.." in msg, f"{what}: {msg}"


def positions(content: bytes, trailer: int, first_record_end: int, checksum_at: int) -> list[int]:
    """Every byte of the header, of the first record (or block) and of the trailer's fields
    up to its checksum; a stride of 5 everywhere else."""
    fields = len(content) - trailer + checksum_at
    return sorted(
        {
            *range(first_record_end),
            *range(0, len(content), 5),
            *range(fields - checksum_at, fields + 1),
        }
    )


def cases(d: Damaged) -> list[tuple[Path, int]]:
    out = [(d.blockmap, at) for at in positions(d.original[d.blockmap], MAP_TRAILER, RECORD + 53, MAP_SUM_AT)]
    return out + [(d.piece, at) for at in positions(d.original[d.piece], PIECE_TRAILER, 32 + 61, PIECE_SUM_AT)]


def test_every_single_byte_change_is_reported_by_full_and_never_restores_wrong_bytes(
    fresh: Damaged,
) -> None:
    d = fresh
    for path, at in cases(d):
        v = bytearray(d.original[path])
        v[at] ^= 0xFF
        d.write(path, bytes(v))
        judge_restore(d, path, f"{path.name} byte {at}")
        d.verify_full_fails()
        d.write(path, d.original[path])


def test_every_truncation_is_reported_and_refused(fresh: Damaged) -> None:
    d = fresh
    for path, n in cases(d):
        d.write(path, d.original[path][:n])
        got = d.restore()
        assert isinstance(got, BackupError), f"{path.name} cut to {n} bytes restored"
        assert str(path) in str(got), str(got)
        d.verify_full_fails()
        d.write(path, d.original[path])


def reseal(content: bytearray, trailer: int, checksum_at: int) -> None:
    """Recomputes the trailer checksum (and a piece's XXH3-128), so only the structure
    checks can catch the change."""
    digest = blake3.blake3(bytes(content[:-trailer])).digest()
    at = len(content) - trailer + checksum_at
    content[at : at + len(digest)] = digest
    if trailer == PIECE_TRAILER:
        at = len(content) - trailer + PIECE_FAST_AT
        content[at : at + 16] = xxh3_tree(bytes(content[:-trailer]))


def test_huge_lengths_counts_and_offsets_are_clean_errors(fresh: Damaged) -> None:
    d = fresh
    piece, bmap = d.original[d.piece], d.original[d.blockmap]
    index_off = struct.unpack_from("<Q", piece, len(piece) - PIECE_TRAILER + 8)[0]
    big64, big32 = struct.pack("<Q", 2**64 - 1), struct.pack("<I", 2**32 - 1)
    edits = [
        (d.piece, 12, big32, "block_size"),
        (d.piece, len(piece) - PIECE_TRAILER + 8, big64, "index_off"),
        (d.piece, len(piece) - PIECE_TRAILER + 16, big64, "entry_count"),
        (d.piece, index_off + 20, big32, "index stored_len"),
        (d.blockmap, 12, big32, "block_size"),
        (d.blockmap, len(bmap) - MAP_TRAILER + 8, big64, "record_count"),
        (d.blockmap, len(bmap) - MAP_TRAILER + 16, big64, "run_count"),
        (d.blockmap, 32 + 8, big64, "run length"),
        (d.blockmap, RECORD + 4, big64, "record offset"),
        (d.blockmap, RECORD + 12, big32, "record stored_len"),
        (d.blockmap, RECORD + 16, big32, "record raw_len"),
        (d.blockmap, RECORD, big32, "record source"),
    ]
    for path, at, value, what in edits:
        v = bytearray(d.original[path])
        v[at : at + len(value)] = value
        if path == d.piece:
            reseal(v, PIECE_TRAILER, PIECE_SUM_AT)
        else:
            reseal(v, MAP_TRAILER, MAP_SUM_AT)
        d.write(path, bytes(v))
        got = d.restore()
        if path == d.piece and what == "index stored_len":
            # A restore reads the block map, not the piece index: it must still be right.
            assert got == d.data, what
        else:
            assert isinstance(got, BackupError), f"{what}: restored"
            assert "offset" in str(got), f"{what}: {got}"
        d.verify_full_fails()
        d.write(path, d.original[path])


@given(
    which=st.sampled_from(["piece", "blockmap"]),
    changes=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
        min_size=2,
        max_size=8,
    ),
    sealed=st.booleans(),
)
def test_random_multi_byte_changes_are_errors_or_the_original_bytes(
    damaged: Damaged, which: str, changes: list[tuple[float, int]], sealed: bool
) -> None:
    d = damaged
    path = d.piece if which == "piece" else d.blockmap
    v = bytearray(d.original[path])
    for where, value in changes:
        v[int(where * len(v))] = value
    if sealed:
        reseal(
            v,
            PIECE_TRAILER if which == "piece" else MAP_TRAILER,
            PIECE_SUM_AT if which == "piece" else MAP_SUM_AT,
        )
    try:
        d.write(path, bytes(v))
        judge_restore(d, path, f"{which} {changes}")
    finally:
        d.write(path, d.original[path])
