"""Sealed block maps in encrypted repositories (docs/FORMAT.md "Sealed block map"): no
record of any block (offset, lengths, flags, digest) is readable in a map, incrementals
and restores read sealed chains, a keyless STANDARD checks a sealed map's stored bytes
and finds a changed one, and unencrypted repositories keep writing plain maps."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import rustybackup._core as core
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, VerificationType, keys
from rustybackup.errors import RustyBackupError
from rustybackup.verify import Verifier
from test_encryption_repo import (  # noqa: F401 - _cheap_argon2 is an autouse fixture
    PASSWORD,
    _cheap_argon2,
    as_write_only_host,
    assert_no_plaintext,
    marked_tree,
    markers,
    tree_digest,
)

SEALED_MAGIC = b"RBBMSEAL"
SEALED_HEADER = 48
SEALED_TRAILER = 96


def records_of(piece: Path) -> list[bytes]:
    """Each stored block's record fields as a map would hold them in the clear: offset,
    stored and raw length (little-endian, as docs/FORMAT.md lays a record out), and the
    block's digest, read from the piece's index (another reader than the map's)."""
    out = []
    for _, _, offset, stored_len, raw_len, _, digest in core.read_piece_index(piece):
        out.append(struct.pack("<QII", offset, stored_len, raw_len))
        out.append(bytes.fromhex(digest))
    return out


def new_repo(root: Path, src: Path, *, encrypted: bool = True) -> BackupManager:
    m = BackupManager(root / "repo")
    if encrypted:
        keys.init_encryption(root / "repo", password=PASSWORD)
    m.register_database("db", src, block_size=4096)
    return m


@settings(max_examples=4, deadline=None)
@given(sizes=st.lists(st.integers(1, 120_000), min_size=1, max_size=3), seed=st.integers(0, 9999))
def test_maps_are_sealed_and_hold_no_record_in_the_clear(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], seed: int
) -> None:
    root = tmp_path_factory.mktemp("maps")
    src = root / "src"
    marks = marked_tree(src, seed, sizes)
    m = new_repo(root, src)
    full = m.backup("db", "full")
    extra = markers(seed + 1, 2000)
    marks += extra
    (src / "added").write_bytes(b"".join(extra))
    inc = m.backup("db", "incremental")
    assert inc.parent_id == full.id
    for s in (full, inc):
        mapped = (m.repository / "sets" / s.id / "blockmap").read_bytes()
        assert mapped[:8] == SEALED_MAGIC
        for field in records_of(m.repository / "sets" / s.id / "data.piece"):
            assert field not in mapped, f"a record field of {s.id} in its map"
    assert_no_plaintext(m.repository, marks)
    keys.forget(m.repository)
    keys.unlock(m.repository, password=PASSWORD)
    m.restore("db", root / "out")
    assert tree_digest(root / "out") == tree_digest(src)


def test_unencrypted_repositories_keep_plain_maps(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 3, [9000])
    m = new_repo(tmp_path, src, encrypted=False)
    s = m.backup("db", "full")
    data = (m.repository / "sets" / s.id / "blockmap").read_bytes()
    assert data[:8] == b"RBBMAP\0\0"
    # A record of the plain map is readable: what sealing hides.
    assert records_of(m.repository / "sets" / s.id / "data.piece")[0] in data


def test_keyless_standard_checks_a_sealed_map_and_finds_a_changed_byte(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 5, [70_000, 3000])
    m = new_repo(tmp_path, src)
    s = m.backup("db", "full")
    mp = m.repository / "sets" / s.id / "blockmap"
    keys.forget(m.repository)
    assert Verifier(m).verify(s.id, VerificationType.STANDARD).ok
    data = bytearray(mp.read_bytes())
    assert len(data) > SEALED_HEADER + 140 + SEALED_TRAILER
    # A byte of the first frame's ciphertext.
    at = SEALED_HEADER + 100
    data[at] ^= 0x01
    mp.write_bytes(bytes(data))
    report = Verifier(m).verify(s.id, VerificationType.STANDARD)
    assert not report.ok
    assert any("blockmap" in str(f) for f in report.findings), report.findings
    # With the key, a restore refuses the map at the frame that fails its tag.
    keys.unlock(m.repository, password=PASSWORD)
    with pytest.raises(RustyBackupError, match=rf"blockmap.*frame 0.*offset {SEALED_HEADER}"):
        m.restore("db", tmp_path / "out")


def test_a_write_only_host_reads_its_own_sealed_parent_map(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 9, [40_000])
    m = new_repo(tmp_path, src)
    root = m.repository
    wo = tmp_path / "write-only.key"
    as_write_only_host(root, wo)
    full = m.backup("db", "full")
    (src / "more").write_bytes(b"".join(markers(4, 512)))
    # A new process of that host: only the key file, no map key loaded in it yet.
    code = (
        "import sys; from rustybackup import BackupManager\n"
        "s = BackupManager(sys.argv[1]).backup('db', 'incremental')\n"
        "print(s.id, s.parent_id, s.pieces[0].block_count)\n"
    )
    env = {**os.environ, keys.KEY_FILE_ENV: str(wo)}
    out = subprocess.run([sys.executable, "-c", code, str(root)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    inc_id, parent_id, stored = out.stdout.split()
    assert parent_id == full.id
    # Only the new file's 2 blocks: the unchanged ones were found in the sealed parent map.
    assert stored == "2"
    assert (root / "sets" / inc_id / "blockmap").read_bytes()[:8] == SEALED_MAGIC
