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
    files = remote_keys.key_files(keys.keys_dir(source.repository))
    if target.remote is not None:
        remote_keys.publish(target.remote, files)
        remote_keys.pull(target.remote)
    else:
        d = keys.keys_dir(target.repository)
        d.mkdir(mode=0o700, exist_ok=True)
        # Slots first, the keyring last: a repository is encrypted once it has a keyring.
        for name in sorted(n for n in files if n != keys.KEYRING) + [keys.KEYRING]:
            store.atomic_write_bytes(d / name, files[name], 0o600)
        version = f"{store.FORMAT_WORD} {keys.ENCRYPTED_FORMAT_VERSION}\n".encode()
        store.atomic_write_bytes(target.repository / store.FORMAT_FILE, version)
    log.info("%s: now holds the keys of %s (same keyring and slots)", where, source.repository)
    return True


def block_keys(source: BackupManager, set_id: str) -> dict[str, tuple[bytes, bytes]] | None:
    """The block keys the copy's FULL check of `set_id` opens its sealed blocks with
    (None for an unencrypted source)."""
    found = keys.set_block_keys(source.repository, set_id)
    return None if found is None else {set_id: found}


__all__ = ["adopt_keys", "block_keys"]
