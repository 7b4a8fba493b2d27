"""Restore reads the blocks that lie back to back in a piece as one stretch, checks each
block of it, and lets the piece leave the page cache behind it (engine/restore.rs). The
restored bytes are the source's through every path that reads blocks (a new tree, in
place with --delta, `dump`), and a flipped byte anywhere in a stretch still fails naming
exactly its block and that block's offset. The oracle is the source's bytes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, manifest
from rustybackup.errors import BackupError
from rustybackup.restore import RestoreOptions
from rustybackup.tree_view import dump_file

BLOCK = 8192


def _one_file(base: Path, data: bytes) -> tuple[BackupManager, Path, int, manifest.Manifest]:
    """A full set of one file; its piece and where the file's first block lies in it."""
    (base / "src").mkdir(parents=True)
    (base / "src" / "f.bin").write_bytes(data)
    m = BackupManager(base / "repo")
    m.register_database("t", base / "src")
    s = m.backup("t", "full")
    man = manifest.load(base / "repo" / "sets" / s.id / "manifest.json")
    piece = base / "repo" / "sets" / s.id / man.sources[-1].piece
    start = piece.read_bytes().find(data[:64])
    assert start > 0
    return m, piece, start, man


def _dumped(m: BackupManager, man: manifest.Manifest, out: Path) -> bytes:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        dump_file(m.repository, man, "f.bin", fd)
    finally:
        os.close(fd)
    return out.read_bytes()


# Each example is a backup and four restores of up to 2.5 MiB (~0.2 s).
@settings(max_examples=12, deadline=None)
@given(
    blocks=st.integers(17, 300),  # past the small-file batches: streamed as stretches
    tail=st.integers(0, BLOCK - 1),
    where=st.floats(0, 1, exclude_max=True),
    seed=st.integers(0, 999),
)
def test_a_flipped_byte_anywhere_in_a_stretch_names_its_block(
    tmp_path_factory: pytest.TempPathFactory, blocks: int, tail: int, where: float, seed: int
) -> None:
    base = tmp_path_factory.mktemp("s")
    data = random.Random(seed).randbytes(blocks * BLOCK + tail)
    m, piece, start, man = _one_file(base, data)
    m.restore("t", base / "out")
    assert (base / "out" / "f.bin").read_bytes() == data
    assert _dumped(m, man, base / "dump0") == data

    pos = int(where * len(data))
    raw = bytearray(piece.read_bytes())
    raw[start + pos] ^= 0x40
    piece.write_bytes(raw)
    k = pos // BLOCK
    named = rf'corrupt block {k} of file "f\.bin" in piece .* at offset {start + k * BLOCK}\b'
    with pytest.raises(BackupError, match=named):
        m.restore("t", base / "fresh")
    # In place: every block is read and checked before it is compared with the file's.
    with pytest.raises(BackupError, match=named):
        m.restore("t", base / "out", options=RestoreOptions(delta=True))
    with pytest.raises(BackupError, match=rf"corrupt block {k} of file"):
        _dumped(m, man, base / "dump1")


def test_delta_restore_still_rewrites_only_the_block_that_differs(tmp_path: Path) -> None:
    """A stretch holds 128 blocks; the in-place restore compares them one by one."""
    data = random.Random(5).randbytes(400 * BLOCK + 11)
    m, _, _, _ = _one_file(tmp_path, data)
    m.restore("t", tmp_path / "out")
    with open(tmp_path / "out" / "f.bin", "r+b") as fh:
        fh.seek(200 * BLOCK + 17)
        fh.write(b"changed")
    res = m.restore("t", tmp_path / "out", options=RestoreOptions(delta=True))
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert res.report.bytes_written == BLOCK
