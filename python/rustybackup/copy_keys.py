"""`copy` between repositories that share their keys: the ciphertext goes as it is.

An encrypted set's pieces, block map and manifest envelope are sealed under its own set
key, wrapped to a generation of the repository's keyring (keys.py). A target that holds
the same keyring opens them unchanged, so `copy` moves the stored bytes and never
decrypts or re-seals anything. Copying into a target that has no keys yet and no sets
(a fresh directory or bucket) first gives it the source's keyring and key slots
(`adopt_keys`), so the copy is exactly what the source stores and opens with the same
passphrases and key files. A target encrypted under other keys is re-encrypted into
(the other part of issue 16); an unencrypted target that already holds sets is refused
(mixing).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import keys, remote_keys, store
from .errors import EncryptionError

if TYPE_CHECKING:
    from .engine import BackupManager

log = logging.getLogger(__name__)


def _files(manager: BackupManager) -> dict[str, bytes]:
    d = keys.keys_dir(manager.repository)
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and remote_keys.is_key_name(p.name)}


def adopt_keys(source: BackupManager, target: BackupManager) -> bool:
    """Gives `target` the keyring and slots of an encrypted `source` when it has none
    and holds no set; returns whether it did. A remote target gets them as objects
    (keyring first, with a conditional create) and its format object says 2, as
    `init --encryption` writes them."""
    if not keys.is_encrypted(source.repository) or keys.is_encrypted(target.repository):
        return False
    where = str(target.remote.url) if target.remote is not None else str(target.repository)
    held = target.catalog.set_ids() or (target.remote is not None and target.remote.remote_manifests())
    if held:
        raise EncryptionError(
            f"{where}: the target holds unencrypted sets and the source is encrypted (mixing encrypted and "
            "unencrypted sets is refused); copy into a new repository"
        )
    files = _files(source)
    version = f"{store.FORMAT_WORD} {keys.ENCRYPTED_FORMAT_VERSION}\n".encode()
    if target.remote is not None:
        order = [keys.KEYRING] + sorted(n for n in files if n != keys.KEYRING)
        for name in order:
            if not target.remote.store.put_bytes_if_absent(remote_keys.PREFIX + name, files[name]):
                raise EncryptionError(
                    f"{where}: {remote_keys.PREFIX}{name} appeared in the target meanwhile (another host made it "
                    "encrypted); run the copy again"
                )
        target.remote.store.put_bytes(store.FORMAT_FILE, version)
        target.remote.format_version = keys.ENCRYPTED_FORMAT_VERSION
        target.remote.encrypted = remote_keys.pull(target.remote)
    else:
        d = keys.keys_dir(target.repository)
        d.mkdir(mode=0o700, exist_ok=True)
        # Slots first, the keyring last: a repository is encrypted once it has a keyring.
        for name in sorted(n for n in files if n != keys.KEYRING) + [keys.KEYRING]:
            store.atomic_write_bytes(d / name, files[name], 0o600)
        store.atomic_write_bytes(target.repository / store.FORMAT_FILE, version)
    log.info("%s: now holds the keys of %s (same keyring and slots)", where, source.repository)
    return True


def block_keys(source: BackupManager, set_id: str) -> dict[str, tuple[bytes, bytes]] | None:
    """The block keys the copy's FULL check of `set_id` opens its sealed blocks with
    (None for an unencrypted source)."""
    found = keys.set_block_keys(source.repository, set_id)
    return None if found is None else {set_id: found}


__all__ = ["adopt_keys", "block_keys"]
