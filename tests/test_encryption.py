"""The cryptographic wiring of encryption at rest (rust/src/crypto/), against published
vectors and an independent implementation: the `cryptography` package's
ChaCha20-Poly1305, X25519 and Argon2id, with HChaCha20 written out here from
draft-irtf-cfrg-xchacha (XChaCha20-Poly1305 is ChaCha20-Poly1305 under the HChaCha20
subkey, with the last 8 nonce bytes)."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import _core
from rustybackup.errors import EncryptionError

KEY = bytes(range(0x80, 0xA0))
NONCE = bytes(range(0x40, 0x58))
AD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
PLAIN = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
CIPHER = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
)
TAG = bytes.fromhex("c0875924c1c7987947deafd8780acf49")


def _rotl(v: int, c: int) -> int:
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha section 2.2), written from the draft."""
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), *struct.unpack("<4I", nonce16)]

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *s[0:4], *s[12:16])


def oracle_seal(key: bytes, nonce: bytes, ad: bytes, plain: bytes) -> bytes:
    sub = hchacha20(key, nonce[:16])
    return nonce + ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce[16:], plain, ad)


def test_hchacha20_draft_vector() -> None:
    # draft-irtf-cfrg-xchacha-03 section 2.2.1: the oracle itself is right.
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce).hex() == ("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")


def test_xchacha20poly1305_draft_vector() -> None:
    sealed = _core.aead_seal(KEY, AD, PLAIN, nonce=NONCE)
    assert sealed == NONCE + CIPHER + TAG
    assert oracle_seal(KEY, NONCE, AD, PLAIN) == sealed
    assert _core.aead_open(KEY, AD, sealed) == PLAIN
    assert _core.AEAD_OVERHEAD == 40


def test_argon2id_rfc9106_vector() -> None:
    out = _core.argon2id(b"\x01" * 32, b"\x02" * 16, m_kib=32, t=3, p=4, secret=b"\x03" * 8, ad=b"\x04" * 12)
    assert out.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


@settings(max_examples=10, deadline=None)
@given(password=st.binary(max_size=40), salt=st.binary(min_size=8, max_size=32), t=st.integers(1, 3))
def test_argon2id_matches_cryptography(password: bytes, salt: bytes, t: int) -> None:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    expected = Argon2id(salt=salt, length=32, iterations=t, lanes=1, memory_cost=64).derive(password)
    assert _core.argon2id(password, salt, m_kib=64, t=t, p=1) == expected


def test_argon2id_refuses_unbounded_parameters() -> None:
    with pytest.raises(ValueError, match="exceed the bounds"):
        _core.argon2id(b"pw", b"s" * 16, m_kib=2**31, t=1, p=1)


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=24, max_size=24),
    ad=st.binary(max_size=64),
    plain=st.binary(max_size=3000),
)
def test_aead_agrees_with_the_oracle_and_round_trips(key: bytes, nonce: bytes, ad: bytes, plain: bytes) -> None:
    sealed = _core.aead_seal(key, ad, plain, nonce=nonce)
    assert sealed == oracle_seal(key, nonce, ad, plain)
    assert _core.aead_open(key, ad, sealed) == plain
    random_nonce = _core.aead_seal(key, ad, plain)
    assert len(random_nonce) == len(plain) + 40
    assert _core.aead_open(key, ad, random_nonce) == plain


@settings(max_examples=80, deadline=None)
@given(plain=st.binary(max_size=200), data=st.data())
def test_any_flipped_bit_is_refused(plain: bytes, data: st.DataObject) -> None:
    sealed = bytearray(_core.aead_seal(KEY, b"ad", plain))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EncryptionError, match="authentication failed"):
        _core.aead_open(KEY, b"ad", bytes(sealed))


def test_short_or_wrong_inputs() -> None:
    with pytest.raises(EncryptionError, match="too short"):
        _core.aead_open(KEY, b"", b"x" * 39)
    with pytest.raises(ValueError, match="32 bytes"):
        _core.aead_seal(b"short", b"", b"")
    with pytest.raises(ValueError, match="24 bytes"):
        _core.aead_seal(KEY, b"", b"", nonce=b"x")
    with pytest.raises(EncryptionError):
        _core.aead_open(bytes(32), AD, NONCE + CIPHER + TAG)


@settings(max_examples=20, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), payload=st.binary(max_size=64), ad=st.binary(max_size=16))
def test_x25519_wrap_against_cryptography(secret: bytes, payload: bytes, ad: bytes) -> None:
    ours = _core.x25519_public(secret)
    theirs = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    assert ours == theirs
    wrapped = _core.x25519_wrap(ours, payload, ad)
    assert _core.x25519_unwrap(secret, wrapped, ad) == payload
    other = bytes(b ^ 0xFF for b in secret)
    with pytest.raises(EncryptionError):
        _core.x25519_unwrap(other, wrapped, ad)


def test_keyed_digest_is_blake3_keyed_mode() -> None:
    import blake3

    key = bytes(range(32))
    assert _core.keyed_digest(key, b"abc") == blake3.blake3(b"abc", key=key).digest()
    assert _core.derive_key("ctx", b"m") == blake3.blake3(b"m", derive_key_context="ctx").digest()
