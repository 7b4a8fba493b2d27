"""Key slots and the keyring of an encrypted repository in an object store.

The bucket holds them as a directory repository does (docs/FORMAT.md "Encryption"):
``keys/keyring`` and one ``keys/<slot-id>.json`` per slot. keys.py works on files, so
the repository's local cache keeps a copy of them, refreshed from the bucket every time
the repository is opened (`pull`: one listing, the keyring and any slot not cached yet;
cached files the bucket no longer holds are dropped). Every change is written to the
bucket right after keys.py made it in the cache (`editing`), so the bucket stays the
truth and another host's next open sees it.

Two hosts changing keys at once:

- ``key add`` writes a new object under a fresh random id with a conditional create
  (``If-None-Match: *``, the storage layer's `put_bytes_if_absent`): it never overwrites
  a slot, and the keyring is not rewritten, so two concurrent adds both keep their slot.
  An id another host took in the same instant is refused (nothing added; run it again).
- ``key remove`` and ``key rotate`` read, decide and write under the repository's
  *exclusive* lock object (remote_locks.py; it waits up to a minute for running backups'
  shared locks): two removes can then never each see the other's slot as the one that
  keeps decrypting and together remove the last two, and two rotations never overwrite
  each other's keyring. Both re-read the slots and the keyring from the bucket under the
  lock.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import keys, store
from .errors import CatalogError, EncryptionError, StorageNotFound

if TYPE_CHECKING:
    from .remote_repo import RemoteRepository
    from .repo_url import RepoUrl

log = logging.getLogger(__name__)

PREFIX = keys.KEYS_DIR + "/"


def is_key_name(name: str) -> bool:
    """`keyring` or a slot file name (keys.py's 8 hex digits); anything else under
    keys/ in the bucket is not ours and is neither fetched nor touched."""
    if name == keys.KEYRING:
        return True
    stem, dot, ext = name.partition(".")
    return dot == "." and ext == "json" and len(stem) == 8 and all(c in "0123456789abcdef" for c in stem)


def key_files(d: Path) -> dict[str, bytes]:
    """The keyring and slot files of a ``keys/`` directory, by name."""
    if not d.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and is_key_name(p.name)}


def pull(remote: RemoteRepository) -> bool:
    """Brings the cache's ``keys/`` up to date with the bucket; returns whether the
    repository is encrypted (the bucket holds a keyring). A bucket whose format object
    says encrypted but that holds no keyring is refused: its sets could not be read."""
    listed = {m.key[len(PREFIX) :]: int(m.size) for m in remote.store.list(PREFIX)}
    names = {n for n in listed if is_key_name(n)}
    d = keys.keys_dir(remote.cache)
    cached = key_files(d)
    if keys.KEYRING not in names:
        if remote.format_version == keys.ENCRYPTED_FORMAT_VERSION:
            raise EncryptionError(
                f"{remote.url}/{PREFIX}{keys.KEYRING}: missing, but the repository's format object says it is "
                "encrypted: without the keyring no set can be opened (restore the object from a copy)"
            )
        if cached:
            # Left from an earlier repository at this URL; this one is not encrypted.
            log.warning("%s: dropping cached key files the bucket does not hold", remote.url)
            shutil.rmtree(d)
        return False
    store.Repository(remote.cache)  # the cache is a repository directory before it holds keys/
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in sorted(names):
        # The keyring changes in place (rotate): always read. A slot is never rewritten.
        if name != keys.KEYRING and name in cached and len(cached[name]) == listed[name]:
            continue
        try:
            data = bytes(remote.store.get_bytes(PREFIX + name))
        except StorageNotFound:
            continue  # removed by another host since the listing
        if cached.get(name) != data:
            store.atomic_write_bytes(d / name, data, 0o600)
    for name in sorted(cached.keys() - names):
        (d / name).unlink(missing_ok=True)
    return True


# In the cache: the ids of other hosts' sets a write-only host cannot open. Their
# manifests are not kept (cleanup would warn about every one on every backup) and not
# fetched again while the list names them.
SEALED_SETS = "sealed-sets"


def _write_only(root: Path) -> bool:
    try:
        found = keys.keys_for(root)
    except EncryptionError:
        return False  # no key: nothing can be registered, and the open says so
    return found is not None and not found.can_decrypt


def sealed_sets(root: Path, in_bucket: Collection[str]) -> set[str]:
    """The sets `pull` need not fetch: on a write-only host, those it found sealed to it
    that are still in the bucket. Any other host forgets the list, so a host that got a
    decrypting key registers every set again."""
    path = root / SEALED_SETS
    if not path.exists():
        return set()
    if not _write_only(root):
        path.unlink(missing_ok=True)
        return set()
    known = set(path.read_text(encoding="ascii", errors="replace").split())
    return known & set(in_bucket)


def set_aside(root: Path, manifests: list[Path]) -> list[Path]:
    """Of `manifests` (cached, not registered yet), those this host can register; on a
    write-only host the others' are dropped from the cache and named in SEALED_SETS."""
    if not _write_only(root):
        return manifests
    ours = [m for m in manifests if readable(root, m)]
    others = [m for m in manifests if m not in ours]
    if others:
        path = root / SEALED_SETS
        known = set(path.read_text(encoding="ascii").split()) if path.exists() else set()
        known |= {m.parent.name for m in others}
        store.atomic_write_bytes(path, "".join(f"{i}\n" for i in sorted(known)).encode())
        for m in others:
            shutil.rmtree(m.parent, ignore_errors=True)
        log.info("%s: %d set(s) of other hosts are sealed to this write-only host", root, len(others))
    return ours


def readable(root: Path, manifest_path: Path) -> bool:
    """Whether this host can register the set of a manifest in its cache: always, but
    on a write-only host only its own sets (the others' manifests stay sealed to it, and
    it needs only its own as parents). Without any key, the clear error of keys.py."""
    found = keys.keys_for(root)
    if found is None or found.can_decrypt:
        return True
    try:
        env = keys.envelope_of(manifest_path.read_bytes())
        if env is None:
            return True  # manifest.load reports an unsealed manifest here (mixing)
        keys.open_manifest(root, env, manifest_path.name)
    except (EncryptionError, OSError) as exc:
        log.debug("%s: not this write-only host's set: %s", manifest_path, exc)
        return False
    return True


def init_encryption(
    url: RepoUrl, *, password: str | None = None, key_file: Path | None = None, create_bucket: bool = False
) -> list[keys.Slot]:
    """`keys.init_encryption` for a repository in a bucket: refused when the bucket's
    repository is encrypted already or holds sets; the keys go up as `publish` says."""
    from .remote_repo import RemoteRepository

    remote = RemoteRepository(url, create=True, create_bucket=create_bucket)
    if remote.encrypted:
        raise EncryptionError(f"{url}: the repository is already encrypted (see `rustybackup key list`)")
    if remote.remote_manifests():
        raise EncryptionError(
            f"{url}: the repository already holds unencrypted sets; encryption is chosen when a repository "
            "is created (mixing encrypted and unencrypted sets is refused): init a new repository"
        )
    root = remote.cache
    store.Repository(root)
    stale = root / store.SETS_DIR
    for d in sorted(stale.iterdir()) if stale.is_dir() else []:
        # The bucket holds no set: what the cache still lists is of an earlier repository.
        shutil.rmtree(d, ignore_errors=True)
    slots = keys.init_encryption(root, password=password, key_file=key_file)
    d = keys.keys_dir(root)
    try:
        publish(remote, key_files(d))
    except BaseException:
        keys.forget(root)
        shutil.rmtree(d, ignore_errors=True)
        raise
    return slots


def publish(remote: RemoteRepository, files: dict[str, bytes]) -> None:
    """Makes the bucket's repository encrypted with these key files (a keyring and its
    slots, by name): the keyring first with a conditional create (of two hosts doing it
    at once, one wins and the other is told, nothing of its keys kept), then the slots,
    then the format object's version 2 (docs/FORMAT.md), so a bucket never says
    "encrypted" without its keys. `init --encryption` and `copy` into a fresh bucket."""
    for name in [keys.KEYRING] + sorted(n for n in files if n != keys.KEYRING):
        if not remote.store.put_bytes_if_absent(PREFIX + name, files[name]):
            raise EncryptionError(
                f"{remote.url}: {PREFIX}{name} is in the bucket already (another host made the repository "
                "encrypted at the same moment); nothing of this was kept (see `rustybackup key list`)"
            )
    remote.store.put_bytes(store.FORMAT_FILE, f"{store.FORMAT_WORD} {keys.ENCRYPTED_FORMAT_VERSION}\n".encode())
    remote.format_version = keys.ENCRYPTED_FORMAT_VERSION
    remote.encrypted = True


@contextmanager
def editing(url: RepoUrl, *, exclusive: bool) -> Iterator[Path]:
    """The cache directory whose ``keys/`` keys.py reads and changes, fresh from the
    bucket; on a clean exit what changed there is written to the bucket: new slots with
    a conditional create, removed ones deleted, a changed keyring replaced. `exclusive`
    (remove, rotate) holds the exclusive lock object from before the re-read to after
    the write."""
    from .remote_repo import RemoteRepository

    remote = RemoteRepository(url, create=False)
    with ExitStack() as held:
        if exclusive:
            held.enter_context(remote.locked("exclusive"))
            pull(remote)
        if not remote.encrypted:
            raise EncryptionError(
                f"{url}: the repository is not encrypted (create one with `init --encryption`): it has no key "
                "slots; nothing was changed"
            )
        d = keys.keys_dir(remote.cache)
        before = key_files(d)
        yield remote.cache
        after = key_files(d)
        for name in sorted(after.keys() - before.keys()):
            if not remote.store.put_bytes_if_absent(PREFIX + name, after[name]):
                (d / name).unlink(missing_ok=True)
                raise EncryptionError(
                    f"{url}: another host created key slot {name.removesuffix('.json')} at the same moment; "
                    "nothing was added (run the command again)"
                )
        for name in sorted(before.keys() - after.keys()):
            if name == keys.KEYRING:
                raise CatalogError(f"{url}: the cached keyring vanished while keys were changed; nothing was removed")
            remote.store.delete(PREFIX + name)
        for name in sorted(after.keys() & before.keys()):
            if after[name] != before[name]:
                remote.store.put_bytes(PREFIX + name, after[name])


__all__ = [
    "editing",
    "init_encryption",
    "is_key_name",
    "key_files",
    "publish",
    "pull",
    "readable",
    "sealed_sets",
    "set_aside",
]
