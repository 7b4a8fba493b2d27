"""The block cipher of encrypted repositories (rust/src/crypto/aead_gcm.rs, block.rs):
new repositories seal their blocks with AES-256-GCM under a key per message derived from
its 192-bit nonce, checked against the `cryptography` package's AES-GCM and the `blake3`
package; repositories created before keep XChaCha20-Poly1305; each block's flags say
which cipher opens it, so sets of both kinds restore and verify side by side."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import BackupManager, VerificationType, _core, keys
from rustybackup.errors import EncryptionError
from rustybackup.verify import Verifier
from test_encryption_repo import (
    PASSWORD,
    _cheap_argon2,
    as_write_only_host,
    marked_tree,
    markers,
    new_repo,
    tree_digest,
)

__all__ = ["_cheap_argon2"]  # the autouse fixture, imported to apply here too

GCM = "aes-256-gcm"
SEALED, ZSTD_BIT, GCM_BIT = 2, 1, 4
# Every block sealed since it binds its keyed digest into its tag (format/block.rs).
BOUND_BIT = 8


def oracle_seal(root: bytes, nonce: bytes, ad: bytes, plain: bytes) -> bytes:
    """The construction written out with two independent implementations."""
    message_key = blake3.blake3(nonce, key=root).digest()
    return nonce + AESGCM(message_key).encrypt(nonce[12:], plain, ad)


@settings(max_examples=40, deadline=None)
@given(
    root=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=24, max_size=24),
    ad=st.binary(max_size=64),
    plain=st.binary(max_size=9000),
)
def test_gcm_agrees_with_the_oracle_and_round_trips(root: bytes, nonce: bytes, ad: bytes, plain: bytes) -> None:
    sealed = _core.aead_seal(root, ad, plain, nonce=nonce, cipher=GCM)
    assert sealed == oracle_seal(root, nonce, ad, plain)
    assert len(sealed) == len(plain) + _core.AEAD_OVERHEAD
    assert _core.aead_open(root, ad, sealed, cipher=GCM) == plain


@settings(max_examples=30, deadline=None)
@given(plain=st.binary(max_size=300), data=st.data())
def test_gcm_any_flipped_bit_is_refused(plain: bytes, data: st.DataObject) -> None:
    root = bytes(range(32))
    sealed = bytearray(_core.aead_seal(root, b"ad", plain, cipher=GCM))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EncryptionError, match="authentication failed"):
        _core.aead_open(root, b"ad", bytes(sealed), cipher=GCM)


def test_gcm_bad_arguments() -> None:
    with pytest.raises(ValueError, match='unknown block cipher "aes-128-gcm"'):
        _core.aead_seal(bytes(32), b"", b"x", cipher="aes-128-gcm")
    with pytest.raises(ValueError, match="a key is 32 bytes, got 31"):
        _core.aead_seal(bytes(31), b"", b"x", cipher=GCM)
    with pytest.raises(ValueError, match="a nonce is 24 bytes, got 12"):
        _core.aead_seal(bytes(32), b"", b"x", nonce=bytes(12), cipher=GCM)
    with pytest.raises(EncryptionError, match="too short"):
        _core.aead_open(bytes(32), b"", bytes(39), cipher=GCM)
    # A message of one cipher does not open as the other.
    sealed = _core.aead_seal(bytes(32), b"", b"x", cipher=GCM)
    with pytest.raises(EncryptionError):
        _core.aead_open(bytes(32), b"", sealed)


def piece_flags(m: BackupManager, set_id: str) -> set[int]:
    return {e[5] for e in _core.read_piece_index(m.repository / "sets" / set_id / "data.piece")}


def keyring_as_before_gcm(root: Path, cipher: str | None) -> None:
    """Rewrites the keyring as the build before AES-256-GCM wrote it (no
    ``block_cipher``; or with the given one), then opens it again as a new process would."""
    k = keys.keys_for(root)
    assert k is not None and k.master is not None
    payload: dict[str, object] = {
        "mac_key": keys._b64(k.mac_key),
        "current": k.current,
        "generations": [
            {"id": g.id, "secret": keys._b64(g.secret or b""), "created_at_us": g.created_at_us}
            for g in k.generations.values()
        ],
    }
    if cipher is not None:
        payload["block_cipher"] = cipher
    sealed = _core.aead_seal(k.master, keys._AD_KEYRING, json.dumps(payload).encode())
    (root / "keys" / "keyring").write_text(json.dumps({"format": 1, "sealed": keys._b64(sealed)}) + "\n")
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)


def test_a_new_repository_seals_with_aes_gcm(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 3, [200_000, 50_000, 1])
    m = new_repo(tmp_path, src, "zstd")
    root = m.repository
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    assert keys.block_cipher(root) == GCM
    s = m.backup("db", "full")
    flags = piece_flags(m, s.id)
    assert flags and all(f & (SEALED | GCM_BIT) == SEALED | GCM_BIT for f in flags)
    assert Verifier(m).verify(s.id, VerificationType.FULL).ok
    m.restore("db", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(src)
    # A rotation keeps the repository's cipher.
    keys.rotate(root, keys.keys_for(root))  # type: ignore[arg-type]
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    assert keys.block_cipher(root) == GCM


def test_a_repository_from_before_keeps_xchacha_and_both_kinds_restore_together(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 4, [300_000, 80_000])
    m = new_repo(tmp_path, src)
    root = m.repository
    keyring_as_before_gcm(root, None)
    assert keys.block_cipher(root) == keys.BLOCK_CIPHER_OLD
    full = m.backup("db", "full")
    assert piece_flags(m, full.id) == {SEALED | BOUND_BIT}
    keys.rotate(root, keys.keys_for(root))  # type: ignore[arg-type]
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    assert keys.block_cipher(root) == keys.BLOCK_CIPHER_OLD, "rotation must not change an old repository's cipher"
    m.restore("db", tmp_path / "out-old")
    assert tree_digest(tmp_path / "out-old") == tree_digest(src)
    # Blocks say their own cipher: an INCREMENTAL sealed with AES-256-GCM on top of an
    # XChaCha20-Poly1305 FULL restores from both pieces, and FULL verifies each set.
    keyring_as_before_gcm(root, GCM)
    first = sorted(src.iterdir())[0]
    first.write_bytes(first.read_bytes()[:5000] + b"".join(markers(5, 400)))
    inc = m.backup("db", "incremental")
    assert inc.parent_id == full.id
    assert piece_flags(m, inc.id) == {SEALED | GCM_BIT | BOUND_BIT}
    for s in (full, inc):
        assert Verifier(m).verify(s.id, VerificationType.FULL).ok
    m.restore("db", tmp_path / "out")
    assert tree_digest(tmp_path / "out") == tree_digest(src)


def test_a_write_only_key_carries_the_cipher(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 6, [90_000])
    m = new_repo(tmp_path, src)
    root = m.repository
    wo = tmp_path / "write-only.key"
    as_write_only_host(root, wo)
    assert json.loads(wo.read_text())["block_cipher"] == GCM
    s = m.backup("db", "full")
    assert piece_flags(m, s.id) == {SEALED | GCM_BIT | BOUND_BIT}
    # A write-only key exported before the field existed seals as its repository did.
    doc = json.loads(wo.read_text())
    del doc["block_cipher"]
    old = tmp_path / "old-write-only.key"
    old.write_text(json.dumps(doc))
    keys.forget(root)
    keys.unlock(root, key_file=old)
    assert keys.block_cipher(root) == keys.BLOCK_CIPHER_OLD
    keys.forget(root)
    keys.unlock(root, password=PASSWORD)
    assert Verifier(m).verify(s.id, VerificationType.FULL).ok


def test_an_unknown_cipher_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    marked_tree(src, 8, [100])
    m = new_repo(tmp_path, src)
    with pytest.raises(EncryptionError, match=r"keyring: block_cipher: 'rot13' is not one of"):
        keyring_as_before_gcm(m.repository, "rot13")
