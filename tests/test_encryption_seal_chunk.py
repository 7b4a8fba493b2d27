"""The backup's sealing pass (rust/src/engine/backup.rs `seal_chunk`): a chunk's changed
blocks are sealed on the pool straight into one buffer, with the chunk's nonces drawn
in one call. Every stored block of a real backup is opened here by an independent
oracle (the `cryptography` package's AES-GCM, the `blake3` package for the message key,
the block-key derivation and the keyed digest, the associated data written out from
docs/FORMAT.md "Encryption"), and must give back exactly the source's bytes at its
file and block; no nonce repeats; a flipped byte is found block-exact."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import blake3
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, VerificationType, _core, keys
from rustybackup.verify import Verifier
from test_encryption_repo import PASSWORD, _cheap_argon2

__all__ = ["_cheap_argon2"]  # the autouse fixture, imported to apply here too

BLOCK = 4096
SEALED, ZSTD_BIT, GCM_BIT, BOUND_BIT = 2, 1, 4, 8
NONCE, TAG = 24, 16
GCM_ROOT_CONTEXT = "rustybackup 2026-11 block aes-256-gcm root"


def oracle_open(cipher_key: bytes, label: str, entry: tuple[int, int, int, int, int, int, str], stored: bytes) -> bytes:
    """A stored AES-256-GCM block opened from first principles (docs/FORMAT.md)."""
    _, _, offset, _, raw_len, flags, digest_hex = entry
    digest = bytes.fromhex(digest_hex)
    name = label.encode()
    ad = b"rustybackup blk1" + struct.pack("<Q", len(name)) + name + struct.pack("<QIB", offset, raw_len, flags)
    if flags & BOUND_BIT:
        ad += struct.pack("<Q", len(digest)) + digest
    root = blake3.blake3(cipher_key, derive_key_context=GCM_ROOT_CONTEXT).digest()
    nonce = stored[:NONCE]
    message_key = blake3.blake3(nonce, key=root).digest()
    return AESGCM(message_key).decrypt(nonce[12:], stored[NONCE:], ad)


def source_blocks(src: Path) -> dict[tuple[int, int], bytes]:
    """(file number, block index) -> the block's bytes, files in the backup's order."""
    out = {}
    for no, p in enumerate(sorted(src.iterdir())):
        data = p.read_bytes()
        for i in range(0, len(data), BLOCK):
            out[(no, i // BLOCK)] = data[i : i + BLOCK]
    return out


def check_every_block(m: BackupManager, set_id: str, src: Path, *, compressed: bool = False) -> int:
    """Opens every stored block of the set with the oracle; returns how many."""
    cipher_key, mac_key = keys.set_block_keys(m.repository, set_id) or (b"", b"")
    assert cipher_key, "the repository is encrypted"
    piece = m.repository / "sets" / set_id / "data.piece"
    raw = piece.read_bytes()
    wanted = source_blocks(src)
    entries = _core.read_piece_index(piece)
    nonces = set()
    end = None
    for e in entries:
        file_no, block_index, offset, stored_len, raw_len, flags, digest_hex = e
        # Blocks lie end to end in the order they were sealed for: each one's place
        # (bound into its tag) is where the one before it ended.
        assert end is None or offset == end, f"block {file_no}/{block_index} at {offset}, expected {end}"
        end = offset + stored_len
        assert flags & (SEALED | GCM_BIT | BOUND_BIT) == SEALED | GCM_BIT | BOUND_BIT
        stored = raw[offset : offset + stored_len]
        nonces.add(stored[:NONCE])
        plain = oracle_open(cipher_key, f"{set_id}/data.piece", e, stored)
        block = wanted[(file_no, block_index)]
        assert raw_len == len(block)
        assert bytes.fromhex(digest_hex) == blake3.blake3(block, key=mac_key).digest()
        if flags & ZSTD_BIT:
            assert compressed and plain[:4] == b"\x28\xb5\x2f\xfd", "a zstd frame"
        else:
            assert plain == block, f"file {file_no} block {block_index}"
    assert len(nonces) == len(entries), "a nonce repeated"
    return len(entries)


def new_repo(tmp: Path, src: Path, compression: str | None = None) -> BackupManager:
    m = BackupManager(tmp / "repo")
    keys.init_encryption(tmp / "repo", password=PASSWORD)
    m.register_database("db", src, block_size=BLOCK, compression=compression)
    return m


def write_tree(src: Path, seed: int, sizes: list[int], twins: int) -> None:
    """Random files; `twins` blocks are copies of earlier blocks (the duplicate pass
    stores them once, so the sealed blocks after them move up)."""
    rng = random.Random(seed)
    src.mkdir(parents=True, exist_ok=True)
    seen: list[bytes] = []
    for i, size in enumerate(sizes):
        data = bytearray(rng.randbytes(size))
        for b in range(0, size - BLOCK + 1, BLOCK):
            if seen and rng.random() < twins / 100:
                data[b : b + BLOCK] = rng.choice(seen)
            seen.append(bytes(data[b : b + BLOCK]))
        (src / f"f{i:02d}").write_bytes(bytes(data))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    # Up to 64 KiB a file's blocks are hashed on the calling thread, larger ones on the
    # pool; empty and one-byte files store nothing or a short block.
    sizes=st.lists(st.sampled_from([0, 1, 4095, 4096, 70_000, 200_000, 131_073]), min_size=1, max_size=4),
    twins=st.sampled_from([0, 30]),
)
def test_every_sealed_block_opens_with_the_oracle(
    tmp_path_factory: pytest.TempPathFactory, seed: int, sizes: list[int], twins: int
) -> None:
    tmp = tmp_path_factory.mktemp("seal")
    src = tmp / "src"
    write_tree(src, seed, sizes, twins)
    m = new_repo(tmp, src)
    s = m.backup("db", "full")
    check_every_block(m, s.id, src)
    assert Verifier(m).verify(s.id, VerificationType.FULL).ok


def test_chunks_of_a_large_file_and_an_incremental(tmp_path: Path) -> None:
    """A file of three 4 MiB chunks (the pass seals one chunk at a time, its nonces drawn
    at once), then an incremental that stores only the changed blocks of each chunk."""
    src = tmp_path / "src"
    write_tree(src, 11, [9 * 1024 * 1024 + 100, 5000], twins=2)
    m = new_repo(tmp_path, src)
    full = m.backup("db", "full")
    assert check_every_block(m, full.id, src) > 2000
    big = src / "f00"
    with open(big, "r+b") as fh:
        for at in (0, 4 * 1024 * 1024 - 10, 8 * 1024 * 1024 + 4096 * 7):
            fh.seek(at)
            fh.write(os.urandom(20))
    inc = m.backup("db", "incremental")
    stored = check_every_block(m, inc.id, src)
    assert 3 <= stored <= 6, stored
    for s in (full, inc):
        assert Verifier(m).verify(s.id, VerificationType.FULL).ok
    m.restore("db", tmp_path / "out")
    assert (tmp_path / "out" / "f00").read_bytes() == big.read_bytes()


def test_compressed_blocks_are_sealed_at_their_compressed_length(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "text").write_bytes(b"".join(b"line %08d of a compressible file\n" % i for i in range(20_000)))
    (src / "random").write_bytes(random.Random(3).randbytes(100_000))
    m = new_repo(tmp_path, src, "zstd")
    s = m.backup("db", "full")
    check_every_block(m, s.id, src, compressed=True)
    flags = {e[5] for e in _core.read_piece_index(m.repository / "sets" / s.id / "data.piece")}
    assert flags == {SEALED | GCM_BIT | BOUND_BIT, SEALED | GCM_BIT | BOUND_BIT | ZSTD_BIT}
    m.restore("db", tmp_path / "out")
    for p in src.iterdir():
        assert (tmp_path / "out" / p.name).read_bytes() == p.read_bytes()


def test_a_flipped_byte_is_found_at_its_block(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, 5, [300_000, 80_000], twins=0)
    m = new_repo(tmp_path, src)
    s = m.backup("db", "full")
    piece = m.repository / "sets" / s.id / "data.piece"
    entries = _core.read_piece_index(piece)
    victim = entries[len(entries) // 2 + 3]
    data = bytearray(piece.read_bytes())
    data[victim[2] + NONCE + 100] ^= 0x10
    cipher_key, _ = keys.set_block_keys(m.repository, s.id) or (b"", b"")
    with pytest.raises(InvalidTag):
        oracle_open(cipher_key, f"{s.id}/data.piece", victim, bytes(data[victim[2] : victim[2] + victim[3]]))
    piece.write_bytes(bytes(data))
    report = Verifier(m).verify(s.id, VerificationType.FULL)
    assert not report.ok
    text = str(report)
    assert f"block {victim[1]}" in text and str(victim[2]) in text, text
