"""Encryption keys of a repository: key slots, the keyring, set keys and envelopes.

Layout (docs/FORMAT.md "Encryption"), all under ``REPO/keys/`` and written through
``store.atomic_writer``:

- ``keyring``: the repository's secrets, sealed (XChaCha20-Poly1305) under the random
  *master key*: the MAC key of block digests and every X25519 key *generation* (the
  newest is current; ``key rotate`` adds one, old ones stay so old sets keep opening).
- ``<slot-id>.json``: one slot each; a passphrase slot (Argon2id, parameters and salt
  stored in it) or a key-file slot wraps the master key. A ``write-only`` slot is only a
  record of an exported write-only key (it wraps nothing).

Each set gets a fresh random *set key*, wrapped to the current generation's public key
(age's model), so a host that holds only the public key (a write-only key file) can
encrypt sets it cannot decrypt. The set key derives the cipher key of its blocks and the
key of its manifest envelope. A write-only host also wraps the manifest key to its own
host key, so it can read its own manifests (for incrementals) but never a block.

Unlocked keys are kept per repository for the process (``unlock``; or from
``RUSTYBACKUP_PASSWORD`` / ``RUSTYBACKUP_KEY_FILE`` on first use), so ``manifest.load``
and the engine find them without threading a key through every call.

Random keys, salts and ids are ``os.urandom``, the system's CSPRNG, which is what
``secrets.token_bytes`` returns: importing ``secrets`` loads hashlib and OpenSSL (~2 ms of
every backup command's start, issue 17), for nothing this module uses.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _core, locks, store
from .errors import EncryptionError

log = logging.getLogger(__name__)

KEYS_DIR = "keys"
KEYRING = "keyring"
ENCRYPTED_FORMAT_VERSION = 2
PASSWORD_ENV = "RUSTYBACKUP_PASSWORD"
NEW_PASSWORD_ENV = "RUSTYBACKUP_NEW_PASSWORD"
KEY_FILE_ENV = "RUSTYBACKUP_KEY_FILE"
WRITE_ONLY_KIND = "rustybackup write-only key"
KEY_FILE_KIND = "rustybackup key file"

# Argon2id costs of new passphrase slots (RFC 9106's second recommended option, 64 MiB,
# 3 passes); each slot stores its own, so raising them never breaks an old slot.
ARGON2_M_KIB = 64 * 1024
ARGON2_T = 3
ARGON2_P = 4

# BLAKE3 derive_key contexts: one per purpose, never reused.
_CTX_KEY_FILE = "rustybackup 2026-11 key file slot"
_CTX_BLOCKS = "rustybackup 2026-11 set blocks"
_CTX_MANIFEST = "rustybackup 2026-11 set manifest"
# A set's block map key comes from its manifest key, not its block key: a write-only
# host recovers the manifest keys of its own sets, so its incrementals read their
# parent's (sealed) map, and still opens no block.
_CTX_BLOCKMAP = "rustybackup 2026-11 set block map"
_AD_KEYRING = b"rustybackup keyring v1"
# The AEAD of stored blocks (rust/src/crypto/block.rs Cipher), recorded in the keyring:
# repositories created before AES-256-GCM have no entry and keep XChaCha20-Poly1305.
# Each block's flags name its cipher, so readers never need this; only writers do.
BLOCK_CIPHER_OLD = "xchacha20-poly1305"
BLOCK_CIPHER_NEW = "aes-256-gcm"
BLOCK_CIPHERS = (BLOCK_CIPHER_OLD, BLOCK_CIPHER_NEW)
_AD_SLOT = b"rustybackup slot v1 "
_AD_SET = b"rustybackup set key v1 "
_AD_MANIFEST = b"rustybackup manifest v1 "
_AD_HOST = b"rustybackup host manifest key v1 "


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise EncryptionError(f"{where}: expected base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionError(f"{where}: not valid base64") from None


def _now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


@dataclass(frozen=True)
class Generation:
    """One X25519 key pair; sets name the generation their key is wrapped to."""

    id: str
    public: bytes
    secret: bytes | None  # None on a write-only host
    created_at_us: int


@dataclass
class Keys:
    """What one process holds of a repository's keys."""

    mac_key: bytes
    generations: dict[str, Generation]
    current: str
    master: bytes | None = None  # None on a write-only host
    host_key: bytes | None = None  # a write-only host's own manifest key
    set_keys: dict[str, bytes] = field(default_factory=dict)  # set id -> set key, this process's new sets
    block_cipher: str = BLOCK_CIPHER_OLD  # what new blocks are sealed with

    @property
    def can_decrypt(self) -> bool:
        return self.master is not None

    def set_key(self, set_id: str) -> bytes:
        """The set key of a new set (one per set id for this process's life, so a pass
        started over and the manifest use the same)."""
        key = self.set_keys.get(set_id)
        if key is None:
            key = self.set_keys[set_id] = os.urandom(32)
        return key

    def block_keys(self, set_key: bytes) -> tuple[bytes, bytes]:
        """(cipher key, MAC key) of a set's blocks, as the engine takes them."""
        return _core.derive_key(_CTX_BLOCKS, set_key), self.mac_key


@dataclass(frozen=True)
class Slot:
    """A key slot as ``key list`` shows it."""

    id: str
    kind: str
    created_at_us: int
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "created_at_us": self.created_at_us, "detail": self.detail}


_lock = threading.Lock()
_unlocked: dict[Path, Keys] = {}


def keys_dir(root: Path) -> Path:
    return root / KEYS_DIR


def is_encrypted(root: Path) -> bool:
    """Whether the repository at `root` is encrypted (it has a keyring)."""
    return (keys_dir(root) / KEYRING).is_file()


# --- creating and unlocking ------------------------------------------------------------


def init_encryption(root: Path, *, password: str | None = None, key_file: Path | None = None) -> list[Slot]:
    """Makes the repository at `root` encrypted: a master key, a keyring with a MAC key
    and a first X25519 generation, and a slot per credential. Refused when the repository
    already holds sets (they would stay unencrypted: mixing is refused) or is encrypted."""
    if password is None and key_file is None:
        raise EncryptionError("--encryption needs a passphrase (RUSTYBACKUP_PASSWORD or --password-file) or --key-file")
    if is_encrypted(root):
        raise EncryptionError(f"{root}: the repository is already encrypted (see `rustybackup key list`)")
    sets = root / store.SETS_DIR
    if sets.is_dir() and any(sets.iterdir()):
        raise EncryptionError(
            f"{root}: the repository already holds unencrypted sets; encryption is chosen when a repository "
            "is created (mixing encrypted and unencrypted sets is refused): init a new repository"
        )
    master = os.urandom(32)
    keys = Keys(mac_key=os.urandom(32), generations={}, current="", master=master, block_cipher=BLOCK_CIPHER_NEW)
    _add_generation(keys)
    keys_dir(root).mkdir(mode=0o700, exist_ok=True)
    slots = []
    if password is not None:
        slots.append(_write_passphrase_slot(root, master, password))
    if key_file is not None:
        slots.append(_write_key_file_slot(root, master, key_file))
    _write_keyring(root, keys)
    store.atomic_write_bytes(root / store.FORMAT_FILE, f"{store.FORMAT_WORD} {ENCRYPTED_FORMAT_VERSION}\n".encode())
    with _lock:
        _unlocked[root.resolve()] = keys
    return slots


def unlock(root: Path, *, password: str | None = None, key_file: Path | None = None) -> Keys:
    """Opens the repository's keys with a passphrase or a key file (a repository key file
    or a write-only key file) and keeps them for this process. One clear error when none
    opens; nothing is changed either way."""
    root = root.resolve()
    if not is_encrypted(root):
        raise EncryptionError(f"{root}: the repository is not encrypted; no key is needed")
    if key_file is not None:
        doc = _read_key_file(key_file)
        if doc.get("kind") == WRITE_ONLY_KIND:
            keys = _write_only_keys(doc, key_file)
        else:
            keys = _open_with(root, lambda slot: _slot_kek_key_file(slot, doc, key_file), f"key file {key_file}")
    elif password is not None:
        keys = _open_with(root, lambda slot: _slot_kek_password(slot, password), "passphrase")
    else:
        raise EncryptionError(f"{root}: give a passphrase or a key file")
    with _lock:
        _unlocked[root] = keys
    return keys


def forget(root: Path) -> None:
    """Drops this process's unlocked keys of `root` (tests; a host handing over)."""
    with _lock:
        _unlocked.pop(root.resolve(), None)


_credentials: dict[str, str | Path] = {}


def use_credentials(*, password_file: Path | None = None, key_file: Path | None = None) -> None:
    """The command line's ``--password-file``/``--key-file``: used, before the
    environment, by every repository this process opens without an explicit `unlock`."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise EncryptionError(f"password file {password_file}: cannot be read: {exc.strerror or exc}") from None
        _credentials["password"] = text.rstrip("\r\n")
    if key_file is not None:
        _credentials["key_file"] = key_file


def keys_for(root: Path) -> Keys | None:
    """The unlocked keys of an encrypted repository (from ``unlock`` or the environment);
    None for an unencrypted one. EncryptionError when it is encrypted and no key is given."""
    root = root.resolve()
    with _lock:
        known = _unlocked.get(root)
    if known is not None:
        return known
    if not is_encrypted(root):
        return None
    given_key = _credentials.get("key_file")
    given_password = _credentials.get("password")
    if isinstance(given_key, Path):
        return unlock(root, key_file=given_key)
    if isinstance(given_password, str):
        return unlock(root, password=given_password)
    key_file = os.environ.get(KEY_FILE_ENV)
    password = os.environ.get(PASSWORD_ENV)
    if key_file:
        return unlock(root, key_file=Path(key_file))
    if password is not None:
        return unlock(root, password=password)
    raise EncryptionError(
        f"{root}: the repository is encrypted; give its passphrase ({PASSWORD_ENV} or --password-file) "
        f"or a key file ({KEY_FILE_ENV} or --key-file)"
    )


def reading_keys(root: Path) -> Keys | None:
    """`keys_for`, refusing a write-only key: reading data needs the secret keys."""
    keys = keys_for(root)
    if keys is not None and not keys.can_decrypt:
        raise EncryptionError(
            f"{root}: this host holds a write-only key: it can back up but cannot read or restore the repository"
        )
    return keys


# --- slots -----------------------------------------------------------------------------


def _slot_path(root: Path, slot_id: str) -> Path:
    if not (len(slot_id) == 8 and all(c in "0123456789abcdef" for c in slot_id)):
        raise EncryptionError(f"slot id {slot_id!r}: expected 8 lower-case hex digits (see `rustybackup key list`)")
    return keys_dir(root) / f"{slot_id}.json"


def _new_slot_id(root: Path) -> str:
    while True:
        sid = os.urandom(4).hex()
        if not (keys_dir(root) / f"{sid}.json").exists():
            return sid


def _write_slot(root: Path, doc: dict[str, Any]) -> Slot:
    path = _slot_path(root, str(doc["id"]))
    store.atomic_write_bytes(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), 0o600)
    return _slot_view(doc, path)


def _write_passphrase_slot(root: Path, master: bytes, password: str) -> Slot:
    sid = _new_slot_id(root)
    salt = os.urandom(16)
    kek = _core.argon2id(password.encode(), salt, m_kib=ARGON2_M_KIB, t=ARGON2_T, p=ARGON2_P)
    doc = {
        "id": sid,
        "kind": "passphrase",
        "created_at_us": _now_us(),
        "kdf": {
            "name": "argon2id",
            "version": 19,
            "m_kib": ARGON2_M_KIB,
            "t": ARGON2_T,
            "p": ARGON2_P,
            "salt": _b64(salt),
        },
        "wrapped": _b64(_core.aead_seal(kek, _AD_SLOT + sid.encode(), master)),
    }
    return _write_slot(root, doc)


def make_key_file(path: Path) -> None:
    """Writes a new random repository key file (mode 0600); refuses to overwrite one."""
    doc = {"kind": KEY_FILE_KIND, "key": _b64(os.urandom(32))}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.write("\n")


def _read_key_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise EncryptionError(f"key file {path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError:
        raise EncryptionError(f"key file {path}: not a rustybackup key file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("kind") not in (KEY_FILE_KIND, WRITE_ONLY_KIND):
        raise EncryptionError(f"key file {path}: not a rustybackup key file (kind)")
    return doc


def _write_key_file_slot(root: Path, master: bytes, key_file: Path) -> Slot:
    if not key_file.exists():
        make_key_file(key_file)
    doc = _read_key_file(key_file)
    if doc.get("kind") != KEY_FILE_KIND:
        raise EncryptionError(f"key file {key_file}: a write-only key cannot be a slot")
    sid = _new_slot_id(root)
    kek = _core.derive_key(_CTX_KEY_FILE, _unb64(doc.get("key"), f"key file {key_file}: key"))
    slot = {
        "id": sid,
        "kind": "keyfile",
        "created_at_us": _now_us(),
        "wrapped": _b64(_core.aead_seal(kek, _AD_SLOT + sid.encode(), master)),
    }
    return _write_slot(root, slot)


def _load_slots(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    d = keys_dir(root)
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            doc = json.loads(p.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("%s: skipped: not a readable key slot (%s)", p, exc)
            continue
        if isinstance(doc, dict) and doc.get("id") == p.stem:
            out.append((p, doc))
        else:
            log.warning("%s: skipped: its id is not its file name", p)
    return out


def _slot_view(doc: dict[str, Any], path: Path) -> Slot:
    kind = str(doc.get("kind"))
    if kind == "passphrase":
        kdf = doc.get("kdf") or {}
        detail = f"argon2id m={kdf.get('m_kib')} KiB t={kdf.get('t')} p={kdf.get('p')}"
    elif kind == "write-only":
        detail = f"public key of generation {doc.get('generation')} (cannot decrypt)"
    else:
        detail = "key file"
    created = doc.get("created_at_us")
    return Slot(str(doc.get("id", path.stem)), kind, created if isinstance(created, int) else 0, detail)


def list_slots(root: Path) -> list[Slot]:
    """Every slot of the repository (no key needed)."""
    if not is_encrypted(root):
        raise EncryptionError(f"{root}: the repository is not encrypted; it has no key slots")
    return [_slot_view(doc, p) for p, doc in _load_slots(root)]


def _slot_kek_password(slot: dict[str, Any], password: str) -> bytes | None:
    if slot.get("kind") != "passphrase":
        return None
    kdf = slot.get("kdf")
    where = f"key slot {slot.get('id')}: kdf"
    if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
        raise EncryptionError(f"{where}: expected argon2id parameters")
    params = [kdf.get(k) for k in ("m_kib", "t", "p")]
    if not all(isinstance(v, int) and 0 < v < 2**32 for v in params):
        raise EncryptionError(f"{where}: m_kib, t and p must be positive integers")
    m, t, p = (int(v) for v in params)  # type: ignore[arg-type]
    try:
        return _core.argon2id(password.encode(), _unb64(kdf.get("salt"), f"{where}.salt"), m_kib=m, t=t, p=p)
    except ValueError as exc:
        raise EncryptionError(f"{where}: {exc}") from None


def _slot_kek_key_file(slot: dict[str, Any], doc: dict[str, Any], path: Path) -> bytes | None:
    if slot.get("kind") != "keyfile":
        return None
    return _core.derive_key(_CTX_KEY_FILE, _unb64(doc.get("key"), f"key file {path}: key"))


def _open_with(root: Path, kek_of: Any, what: str) -> Keys:
    for _, slot in _load_slots(root):
        kek = kek_of(slot)
        if kek is None:
            continue
        sid = str(slot.get("id"))
        try:
            master = _core.aead_open(kek, _AD_SLOT + sid.encode(), _unb64(slot.get("wrapped"), f"key slot {sid}"))
        except EncryptionError:
            continue
        return _read_keyring(root, master)
    raise EncryptionError(f"{root}: the {what} opens no key slot of this repository (wrong passphrase or key file?)")


def add_passphrase(root: Path, keys: Keys, password: str) -> Slot:
    """A new passphrase slot (the repository must be open with a decrypting key)."""
    return _write_passphrase_slot(root, _need_master(root, keys), password)


def add_key_file(root: Path, keys: Keys, key_file: Path) -> Slot:
    """A new key-file slot; the file is created (random, mode 0600) when absent."""
    return _write_key_file_slot(root, _need_master(root, keys), key_file)


def add_write_only(root: Path, keys: Keys, out: Path) -> Slot:
    """Exports a write-only key to `out` (mode 0600): the current public key, the MAC
    key and a fresh host key; records a ``write-only`` slot so ``key list`` shows it."""
    _need_master(root, keys)
    gen = keys.generations[keys.current]
    sid = _new_slot_id(root)
    doc = {
        "kind": WRITE_ONLY_KIND,
        "slot": sid,
        "generation": gen.id,
        "public": _b64(gen.public),
        "mac_key": _b64(keys.mac_key),
        "host_key": _b64(os.urandom(32)),
        "block_cipher": keys.block_cipher,
    }
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        fh.write("\n")
    return _write_slot(root, {"id": sid, "kind": "write-only", "created_at_us": _now_us(), "generation": gen.id})


def remove_slot(root: Path, slot_id: str) -> None:
    """Removes a slot; refused when it is the last one that can decrypt."""
    path = _slot_path(root, slot_id)
    slots = _load_slots(root)
    doc = next((d for p, d in slots if p == path), None)
    if doc is None:
        raise EncryptionError(f"{root}: no key slot {slot_id} (see `rustybackup key list`)")
    decrypting = [d for _, d in slots if d.get("kind") in ("passphrase", "keyfile")]
    if doc.get("kind") in ("passphrase", "keyfile") and len(decrypting) == 1:
        raise EncryptionError(
            f"{root}: slot {slot_id} is the last one that can decrypt the repository; add another "
            "(`rustybackup key add`) before removing it"
        )
    path.unlink()
    store.fsync_dir(path.parent)


def rotate(root: Path, keys: Keys) -> Generation:
    """A new key generation for new sets; old sets keep theirs (their pieces are not
    touched), and the old secrets stay in the keyring so they keep opening. The keyring
    is read again under its lock, so a rotation by another process is never lost."""
    master = _need_master(root, keys)
    with locks.keyring_lock(keys_dir(root)):
        fresh = _read_keyring(root, master)
        gen = _add_generation(fresh)
        _write_keyring(root, fresh)
    keys.generations = fresh.generations
    keys.current = fresh.current
    return gen


def _need_master(root: Path, keys: Keys) -> bytes:
    if keys.master is None:
        raise EncryptionError(f"{root}: a write-only key cannot change key slots")
    return keys.master


# --- keyring ---------------------------------------------------------------------------


def _add_generation(keys: Keys) -> Generation:
    secret = os.urandom(32)
    # One more than the highest: after `key rotate --reencrypt --drop-old` removed old
    # generations, a count would hand out a dropped generation's id again.
    numbers = [int(g[1:]) for g in keys.generations if g[1:].isdigit()]
    gid = f"g{max(numbers, default=0) + 1}"
    gen = Generation(gid, _core.x25519_public(secret), secret, _now_us())
    keys.generations[gid] = gen
    keys.current = gid
    return gen


def _write_keyring(root: Path, keys: Keys) -> None:
    assert keys.master is not None
    payload = {
        "mac_key": _b64(keys.mac_key),
        "block_cipher": keys.block_cipher,
        "current": keys.current,
        "generations": [
            {"id": g.id, "secret": _b64(g.secret or b""), "created_at_us": g.created_at_us}
            for g in keys.generations.values()
        ],
    }
    sealed = _core.aead_seal(keys.master, _AD_KEYRING, json.dumps(payload).encode())
    doc = {"format": 1, "sealed": _b64(sealed)}
    store.atomic_write_bytes(keys_dir(root) / KEYRING, (json.dumps(doc) + "\n").encode(), 0o600)


def _read_keyring(root: Path, master: bytes) -> Keys:
    path = keys_dir(root) / KEYRING
    where = f"{path}"
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EncryptionError(f"{where}: cannot be read ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise EncryptionError(f"{where}: format: expected 1")
    try:
        payload = json.loads(_core.aead_open(master, _AD_KEYRING, _unb64(doc.get("sealed"), f"{where}: sealed")))
    except EncryptionError:
        raise EncryptionError(f"{where}: does not open with the master key (damaged keyring)") from None
    gens = {}
    for i, g in enumerate(payload["generations"]):
        secret = _unb64(g["secret"], f"{where}: generations[{i}].secret")
        gens[g["id"]] = Generation(g["id"], _core.x25519_public(secret), secret, int(g["created_at_us"]))
    mac = _unb64(payload["mac_key"], f"{where}: mac_key")
    cipher = _block_cipher_of(payload, where)
    return Keys(mac_key=mac, generations=gens, current=str(payload["current"]), master=master, block_cipher=cipher)


def _block_cipher_of(doc: dict[str, Any], where: str) -> str:
    cipher = doc.get("block_cipher", BLOCK_CIPHER_OLD)
    if cipher not in BLOCK_CIPHERS:
        raise EncryptionError(f"{where}: block_cipher: {cipher!r} is not one of {', '.join(BLOCK_CIPHERS)}")
    return str(cipher)


def block_cipher(root: Path) -> str:
    """The AEAD new blocks of the repository at `root` are sealed with (the engine's
    ``seal_cipher``); XChaCha20-Poly1305 when it is not encrypted (nothing is sealed)."""
    keys = keys_for(root)
    return keys.block_cipher if keys is not None else BLOCK_CIPHER_OLD


def _write_only_keys(doc: dict[str, Any], path: Path) -> Keys:
    where = f"write-only key {path}"
    gid = str(doc.get("generation"))
    gen = Generation(gid, _unb64(doc.get("public"), f"{where}: public"), None, 0)
    return Keys(
        mac_key=_unb64(doc.get("mac_key"), f"{where}: mac_key"),
        generations={gid: gen},
        current=gid,
        host_key=_unb64(doc.get("host_key"), f"{where}: host_key"),
        block_cipher=_block_cipher_of(doc, where),
    )


# --- sets: envelopes -------------------------------------------------------------------

ENVELOPE_KEY = "rustybackup_envelope"


SET_KEY_FILE = ".set-key"
_AD_STAGED = b"rustybackup staged set key v1 "


def new_set_block_keys(root: Path, set_id: str) -> tuple[bytes, bytes] | None:
    """The (cipher key, MAC key) a new set's blocks are sealed with; None when the
    repository is not encrypted. The set key is kept, sealed under this host's own key
    (the master key, or a write-only host's host key), in ``staging/<id>/.set-key`` until
    the manifest's envelope holds it: a backup resumed by another process (resume.py
    keeps the set id) seals its remaining blocks with the same key."""
    keys = keys_for(root)
    if keys is None:
        return None
    local = keys.master or keys.host_key
    staged = root / store.STAGING_DIR / store.check_set_id(set_id) / SET_KEY_FILE
    ad = _AD_STAGED + set_id.encode()
    if set_id not in keys.set_keys and local is not None and staged.is_file():
        keys.set_keys[set_id] = _core.aead_open(local, ad, staged.read_bytes())
    set_key = keys.set_key(set_id)
    if local is not None and staged.parent.is_dir() and not staged.exists():
        store.atomic_write_bytes(staged, _core.aead_seal(local, ad, set_key), 0o600)
    mkey = _core.derive_key(_CTX_MANIFEST, set_key)
    _core.blockmap_write_key(set_id, _core.derive_key(_CTX_BLOCKMAP, mkey))
    _load_map_key(mkey)
    return keys.block_keys(set_key)


def _load_map_key(manifest_key: bytes) -> None:
    """Lets the engine's block-map readers of this process open the set's sealed map."""
    _core.blockmap_read_key(_core.derive_key(_CTX_BLOCKMAP, manifest_key))


def seal_manifest(root: Path, set_id: str, document: bytes) -> dict[str, Any] | None:
    """The envelope a new set's manifest is stored as; None for an unencrypted repository."""
    keys = keys_for(root)
    if keys is None:
        return None
    set_key = keys.set_key(set_id)
    gen = keys.generations[keys.current]
    mkey = _core.derive_key(_CTX_MANIFEST, set_key)
    env: dict[str, Any] = {
        ENVELOPE_KEY: 1,
        "set_id": set_id,
        "generation": gen.id,
        "set_key": _b64(_core.x25519_wrap(gen.public, set_key, _AD_SET + set_id.encode())),
        "sealed": _b64(_core.aead_seal(mkey, _AD_MANIFEST + set_id.encode(), document)),
    }
    if keys.host_key is not None:
        env["host_manifest_key"] = _b64(_core.aead_seal(keys.host_key, _AD_HOST + set_id.encode(), mkey))
    # The envelope holds the set key now; the staged copy must not be published (a
    # write-only host's copy would let it open its own blocks).
    (root / store.STAGING_DIR / set_id / SET_KEY_FILE).unlink(missing_ok=True)
    # The set's map is written: no later map of this process seals under its key.
    _core.blockmap_write_key(set_id, None)
    return env


def _set_key_of(root: Path, keys: Keys, env: dict[str, Any], where: str) -> bytes:
    set_id = str(env.get("set_id"))
    gen = keys.generations.get(str(env.get("generation")))
    if gen is None or gen.secret is None:
        raise EncryptionError(f"{where}: its key generation {env.get('generation')!r} is not in this host's keys")
    return _core.x25519_unwrap(gen.secret, _unb64(env.get("set_key"), f"{where}: set_key"), _AD_SET + set_id.encode())


def open_manifest(root: Path, env: dict[str, Any], where: str) -> bytes:
    """The manifest document inside an envelope."""
    keys = keys_for(root)
    if keys is None:
        raise EncryptionError(
            f"{where}: an encrypted manifest in a repository without keys (mixing encrypted and unencrypted "
            "data is refused)"
        )
    set_id = str(env.get("set_id"))
    try:
        if keys.can_decrypt:
            mkey = _core.derive_key(_CTX_MANIFEST, _set_key_of(root, keys, env, where))
        elif keys.host_key is not None and "host_manifest_key" in env:
            mkey = _core.aead_open(
                keys.host_key, _AD_HOST + set_id.encode(), _unb64(env["host_manifest_key"], f"{where}: host key")
            )
        else:
            raise EncryptionError(f"{where}: a write-only key opens only the manifests of its own host's sets")
        _load_map_key(mkey)
        return _core.aead_open(mkey, _AD_MANIFEST + set_id.encode(), _unb64(env.get("sealed"), f"{where}: sealed"))
    except EncryptionError as exc:
        # The cipher's errors do not say which manifest; the checks above say it already.
        text = str(exc)
        raise EncryptionError(text if text.startswith(f"{where}: ") else f"{where}: {text}") from None


def set_block_keys(root: Path, set_id: str, manifest_path: Path | None = None) -> tuple[bytes, bytes] | None:
    """(cipher key, MAC key) of an existing set's blocks, read from its manifest's
    envelope (in sets/, or at `manifest_path`: a set kept in staging after its upload
    was cut); None when the repository is not encrypted."""
    keys = reading_keys(root)
    if keys is None:
        return None
    where = str(manifest_path) if manifest_path else f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}"
    env = stored_envelope(root, set_id, manifest_path)
    set_key = _set_key_of(root, keys, env, where)
    _load_map_key(_core.derive_key(_CTX_MANIFEST, set_key))
    return keys.block_keys(set_key)


def stored_set_key(root: Path, set_id: str) -> tuple[bytes, str]:
    """(set key, generation id) of an existing set, from its manifest's envelope: what
    re-encryption (reencrypt.py) opens the set's blocks and map with."""
    keys = reading_keys(root)
    if keys is None:
        raise EncryptionError(f"{root}: the repository is not encrypted")
    env = stored_envelope(root, set_id)
    where = f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}"
    return _set_key_of(root, keys, env, where), str(env.get("generation"))


def stored_envelope(root: Path, set_id: str, manifest_path: Path | None = None) -> dict[str, Any]:
    """The envelope a set's stored manifest is (readable without any key); `manifest_path`
    reads one that is not (yet) in its set directory."""
    path = manifest_path or root / store.SETS_DIR / store.check_set_id(set_id) / store.MANIFEST
    where = str(manifest_path) if manifest_path else f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}"
    try:
        env = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EncryptionError(f"{where}: cannot be read ({exc})") from None
    if not isinstance(env, dict) or env.get(ENVELOPE_KEY) != 1:
        raise EncryptionError(f"{where}: not encrypted in an encrypted repository (mixing is refused)")
    return env


def set_key_parts(keys: Keys, set_key: bytes) -> tuple[tuple[bytes, bytes], bytes]:
    """(block keys, block map key) a set key gives (the derivations `seal_manifest` and
    `new_set_block_keys` use)."""
    mkey = _core.derive_key(_CTX_MANIFEST, set_key)
    return keys.block_keys(set_key), _core.derive_key(_CTX_BLOCKMAP, mkey)


def drop_generations(root: Path, keys: Keys, keep: set[str]) -> list[str]:
    """Removes from the keyring every generation but the current one and `keep`
    (`key rotate --reencrypt --drop-old`, once no set is wrapped to them); returns the
    ids dropped. The keyring is read again under its lock, like `rotate`."""
    master = _need_master(root, keys)
    with locks.keyring_lock(keys_dir(root)):
        fresh = _read_keyring(root, master)
        dropped = [g for g in fresh.generations if g != fresh.current and g not in keep]
        for g in dropped:
            del fresh.generations[g]
        if dropped:
            _write_keyring(root, fresh)
    keys.generations = fresh.generations
    keys.current = fresh.current
    return dropped


def holds_key_of(root: Path, text: bytes) -> bool:
    """Whether this host holds the secret key of the generation that sealed the stored
    manifest `text`: then an envelope that does not open was changed, not sealed with a
    key this host lacks (no key, a keyring from before a rotation). Never raises."""
    try:
        held = keys_for(root)
    except EncryptionError:
        return False
    env = envelope_of(text)
    gen = None if held is None or env is None else held.generations.get(str(env.get("generation")))
    return gen is not None and gen.secret is not None


def envelope_of(text: bytes) -> dict[str, Any] | None:
    """The envelope a stored manifest is, or None when it is a plain manifest."""
    if b'"' + ENVELOPE_KEY.encode() + b'"' not in text[:4096]:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and ENVELOPE_KEY in doc else None


def source_block_keys(root: Path, set_ids: list[str]) -> list[tuple[bytes, bytes] | None] | None:
    """The block keys of each source of a set being read (in `sources` order), or None
    when the repository is not encrypted (the engine then reads plain blocks only)."""
    if reading_keys(root) is None:
        return None
    return [set_block_keys(root, sid) for sid in set_ids]


def given_credentials() -> tuple[str | None, Path | None]:
    """(passphrase, key file) as the command line or the environment gives them."""
    password = _credentials.get("password")
    key_file = _credentials.get("key_file")
    env_key = os.environ.get(KEY_FILE_ENV)
    return (
        password if isinstance(password, str) else os.environ.get(PASSWORD_ENV),
        key_file if isinstance(key_file, Path) else (Path(env_key) if env_key else None),
    )


def can_read(root: Path) -> bool:
    """Whether this process can read the repository's sets: unencrypted, or its keys
    (not a write-only key) are at hand. Never raises: a keyless monitoring host runs
    QUICK and STANDARD on ciphertext."""
    try:
        return reading_keys(root) is not None or not is_encrypted(root)
    except EncryptionError:
        return False


def verification_keys(root: Path, set_ids: set[str]) -> dict[str, tuple[bytes, bytes]] | None:
    """Block keys of the sets a FULL verification reads (by set id); None when the
    repository is not encrypted. EncryptionError when it is and no reading key is given
    (QUICK and STANDARD need none)."""
    if not is_encrypted(root):
        return None
    try:
        reading_keys(root)
    except EncryptionError as exc:
        raise EncryptionError(f"FULL verification opens every block: {exc} (QUICK and STANDARD need no key)") from None
    out = {}
    for sid in sorted(set_ids):
        try:
            found = set_block_keys(root, sid)
        except EncryptionError as exc:
            # A set whose manifest is gone or damaged is the verification's finding.
            log.debug("no block keys for set %s: %s", sid, exc)
            continue
        if found is not None:
            out[sid] = found
    return out
