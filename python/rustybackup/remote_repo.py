"""A repository in an object store (``s3://bucket/prefix``), seen through a local cache.

The bucket holds the repository exactly as a directory would (docs/FORMAT.md, "Object
storage layout"): ``format``, ``sets/<id>/manifest.json``, ``data.piece``, ``blockmap``.
Nothing else is the truth: no catalog, no rename, no flock exist there.

The cache (``$XDG_CACHE_HOME/rustybackup/<scheme>-<bucket>-<hash>/``) is an ordinary
local repository directory that the engine works in unchanged: its ``catalog.db``, the
manifest of every set in the bucket, the block maps an incremental needs and the pieces
a restore or a check fetched. Opening a remote repository brings the cache up to date
from the manifests in the bucket (new ones fetched and registered, vanished ones
dropped); a lost cache is rebuilt from them, so two hosts writing one bucket see each
other's sets.

A backup is staged in the cache and committed by the storage layer's `upload_set`
(pieces and block map first, the manifest last with a conditional create): the set
exists when its manifest does, and the cache registers it only after that.
"""

from __future__ import annotations

import copy as _copy
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import _core, locks, manifest, store
from .errors import CatalogError, ConfigError, EncryptionError, RepositoryLocked, StorageError, StorageNotFound
from .repo_url import RepoUrl
from .upload_limits import UploadPacer, UploadSchedule

if TYPE_CHECKING:
    from .catalog import BackupCatalog, BackupSet
    from .manifest import Manifest

log = logging.getLogger(__name__)

# Lock objects: refreshed every third of their life while held; a crashed holder's lock
# blocks deletes for at most this long. Readers and writers wait a little for a delete
# in progress elsewhere (and deletes for readers) before giving up with RepositoryLocked.
LOCK_TTL_SECONDS = 120.0
LOCK_WAIT_SECONDS = 60.0
LOCK_RETRY_SECONDS = 0.5

# Objects under sets/ that no manifest names are a cut upload's; they are removed once
# older than this (a slower host may still be uploading its pieces before its manifest).
SWEEP_GRACE_SECONDS = 6 * 3600.0


# The storage layer's own transfer settings, taken from RUSTYBACKUP_S3_<NAME> (credentials
# and the endpoint come from the standard AWS variables and files, read in Rust).
TRANSFER_OPTIONS = ("part_size", "parts_in_flight", "files_in_flight", "retry_timeout", "max_retries")


def transfer_options() -> dict[str, str] | None:
    """``RUSTYBACKUP_S3_RETRY_TIMEOUT=30`` and the like, as storage options."""
    found = {
        k: os.environ[f"RUSTYBACKUP_S3_{k.upper()}"]
        for k in TRANSFER_OPTIONS
        if f"RUSTYBACKUP_S3_{k.upper()}" in os.environ
    }
    return found or None


@dataclass(frozen=True)
class SyncReport:
    """What opening a remote repository changed in its cache."""

    added: tuple[str, ...]
    dropped: tuple[str, ...]


class RemoteRepository:
    """One remote repository: its URL, its storage handle and its local cache."""

    def __init__(self, url: RepoUrl, *, create: bool = False, create_bucket: bool = False) -> None:
        self.url = url
        self.cache = url.cache_dir()
        self.store = _core.ObjectStore(str(url), transfer_options())
        if create_bucket:
            self.store.create_bucket()
        self.format_version = self._check_format(create)
        self.listed: dict[str, _core.ObjectMeta] = {}
        self.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        # An encrypted repository's key slots and keyring are objects too; keys.py reads
        # the cache's copy, brought up to date here (remote_keys.py).
        from . import remote_keys

        self.encrypted = remote_keys.pull(self)

    def __repr__(self) -> str:
        return f"RemoteRepository({str(self.url)!r}, cache={str(self.cache)!r})"

    # --- the format object -------------------------------------------------------------

    def _check_format(self, create: bool) -> int:
        """Reads the bucket's ``format`` object (one request: it also finds a missing
        bucket or wrong credentials, as the storage layer's error), writing it first
        when the repository is new and `create` allows it. Returns its version: 1, or
        2 for an encrypted repository (remote_keys.init_encryption writes that)."""
        text = f"{store.FORMAT_WORD} {store.FORMAT_VERSION}\n"
        data = self.store.get_bytes(store.FORMAT_FILE) if self.store.head(store.FORMAT_FILE) else None
        if data is None:
            if not create:
                raise CatalogError(f"no repository at {self.url}; run `rustybackup --repo {self.url} init` first")
            if not self.store.put_bytes_if_absent(store.FORMAT_FILE, text.encode()):
                data = self.store.get_bytes(store.FORMAT_FILE)  # another host created it just now
            else:
                log.info("created repository %s", self.url)
                return store.FORMAT_VERSION
        got = bytes(data).decode("utf-8", errors="replace").strip()
        if got == f"{store.FORMAT_WORD} 2":
            return 2
        if got != text.strip():
            raise CatalogError(
                f"{self.url}/{store.FORMAT_FILE}: unrecognised repository format {got[:60]!r} "
                f"(this rustybackup reads {text.strip()!r})"
            )
        return store.FORMAT_VERSION

    # --- the cache -------------------------------------------------------------------

    def remote_manifests(self) -> dict[str, int]:
        """Set id -> manifest size of every manifest in the bucket (one listing)."""
        out: dict[str, int] = {}
        listed: dict[str, _core.ObjectMeta] = {}
        for meta in self.store.list(store.SETS_DIR + "/"):
            parts = meta.key.split("/")
            if len(parts) == 3 and parts[2] == store.MANIFEST and manifest.is_set_id(parts[1]):
                out[parts[1]] = meta.size
                listed[parts[1]] = meta
        # Kept for reencrypt_refresh: a manifest replaced in the bucket (re-encryption).
        self.listed = listed
        return out

    def pull(self, repo: store.Repository) -> tuple[list[Path], list[str]]:
        """Fetches into the cache the manifests it lacks; returns them and the ids of the
        cached sets whose manifest left the bucket (deleted by another host)."""
        remote = self.remote_manifests()
        sets_dir = repo.root / store.SETS_DIR
        local = {d.name for d in sets_dir.iterdir() if manifest.is_set_id(d.name) and (d / store.MANIFEST).is_file()}
        fetched: list[Path] = []
        sealed: set[str] = set()
        if self.encrypted:
            from . import remote_keys

            sealed = remote_keys.sealed_sets(repo.root, remote.keys())
        for set_id in sorted(remote.keys() - local - sealed):
            d = sets_dir / set_id
            d.mkdir(exist_ok=True)
            dest = d / store.MANIFEST
            self._get(f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}", dest)
            fetched.append(dest)
            if self.encrypted:
                from . import reencrypt_refresh

                reencrypt_refresh.stamp(self, set_id, d)  # so the next open need not fetch it again
        # A set directory still holding its staging lock is being committed by this host.
        gone = sorted(i for i in local - remote.keys() if not (sets_dir / i / locks.STAGING_LOCK).exists())
        return fetched, gone

    def sync(self, repo: store.Repository, catalog: BackupCatalog) -> SyncReport:
        """Brings `catalog` (the cache's) up to date with the bucket."""
        fetched, gone = self.pull(repo)
        if self.encrypted:
            from . import reencrypt_refresh

            # Sets re-encrypted by another host (or a killed run's commit): see there.
            reencrypt_refresh.refresh(self, repo, catalog)
        known = catalog.set_ids()
        todo = [p for p in fetched if p.parent.name not in known]
        # Also manifests cached earlier whose registration did not happen (a crash).
        todo += [m for m in repo.manifests() if m.parent.name not in known and m not in fetched]
        todo = [m for m in todo if m.parent.name not in gone and not (m.parent / locks.STAGING_LOCK).exists()]
        if self.encrypted:
            from . import remote_keys

            # A write-only host registers only its own sets (the rest it cannot open).
            todo = remote_keys.set_aside(repo.root, todo)
        added: list[str] = []
        if todo and self.encrypted and not _has_key(repo.root):
            # A keyless (monitoring) host registers the sets from their clear records.
            added += self._register_records(repo, catalog, todo)
            todo = []
        if todo:
            catalog.register_manifests(sorted(todo))
            now = catalog.set_ids()
            added = [m.parent.name for m in todo if m.parent.name in now]
        dropped: list[str] = []
        for set_id in gone:
            if set_id in known:
                catalog.remove_set(set_id)
            repo.discard(set_id)
            dropped.append(set_id)
        if added or dropped:
            log.info("%s: %d set(s) new in the bucket, %d gone", self.url, len(added), len(dropped))
        return SyncReport(tuple(added), tuple(dropped))

    def _register_records(self, repo: store.Repository, catalog: BackupCatalog, manifests: list[Path]) -> list[str]:
        """Registers the sets of `manifests` (sealed, unopenable here) from their clear
        catalog records (catalog_record.py); a set whose record is absent (written before
        records existed) or damaged is named and left out."""
        from . import catalog_record

        records: list[tuple[str, catalog_record.Record]] = []
        for m in manifests:
            set_id = m.parent.name
            rel = f"{store.SETS_DIR}/{set_id}/{catalog_record.RECORD}"
            dest = m.parent / catalog_record.RECORD
            try:
                if not dest.is_file():
                    self._get(rel, dest)
                records.append((rel, catalog_record.parse(dest.read_bytes(), set_id, rel)))
            except StorageNotFound:
                log.warning(
                    "%s: set %s has no clear catalog record (written before this version): without the key "
                    "it cannot be listed or verified",
                    self.url,
                    set_id,
                )
            except CatalogError as exc:
                dest.unlink(missing_ok=True)
                log.warning("%s: set %s not registered: %s", self.url, set_id, exc)
        report = catalog.register_records(records)
        now = catalog.set_ids()
        if report.skipped:
            log.warning("%s: %d record(s) not registered", self.url, len(report.skipped))
        return [r.backup_set.id for _, r in records if r.backup_set.id in now]

    def fetch(self, repo: store.Repository, set_ids: Iterable[str], *, with_pieces: bool) -> int:
        """Brings the block maps (and with `with_pieces` the pieces) of `set_ids` into the
        cache, streamed to disk; files already there with the size the manifest states are
        kept. Returns the bytes fetched."""
        fetched = 0
        for set_id in set_ids:
            d = repo.set_dir(set_id)
            m = manifest.load(d / store.MANIFEST, set_id=set_id)
            wanted: list[tuple[str, int | None]] = [(m.blockmap.path, None)]
            if with_pieces:
                wanted += [(p.path, p.size) for p in m.pieces]
            for rel, size in wanted:
                dest = repo.root / rel
                if dest.parent != d:
                    raise CatalogError(f"manifest of set {set_id}: {rel!r} is not a file of sets/{set_id}/")
                try:
                    if dest.is_file() and (size is None or dest.stat().st_size == size):
                        continue
                except OSError:
                    pass
                fetched += self._get(rel, dest)
        return fetched

    def fetch_chain(self, repo: store.Repository, m: Manifest, *, with_pieces: bool) -> int:
        """`fetch` of every set `m`'s block map refers to (its sources, itself last)."""
        return self.fetch(repo, dict.fromkeys(s.set_id for s in m.sources), with_pieces=with_pieces)

    def trim(self, repo: store.Repository, set_id: str) -> None:
        """Drops a committed set's pieces from the cache (they are in the bucket); the
        manifest and the block map stay, for the next incremental."""
        d = repo.set_dir(set_id)
        try:
            m = manifest.load(d / store.MANIFEST, set_id=set_id)
        except CatalogError:
            return
        except EncryptionError:
            # A host without the key (QUICK/STANDARD scrub the ciphertext) cannot open
            # the manifest; a set's blocks are in its one data.piece (engine.py).
            (d / store.PIECE).unlink(missing_ok=True)
            return
        for p in m.pieces:
            (repo.root / p.path).unlink(missing_ok=True)

    # --- locks (restic's model: lock objects in the bucket, storage layer) ---------------

    @contextmanager
    def locked(self, purpose: str, wait: float | None = None) -> Iterator[None]:
        """Holds a lock object: "shared" while a backup, restore, check or copy runs,
        "exclusive" while sets are deleted or leftovers swept, so no host deletes what
        another one is reading or building on. A lock held elsewhere is tried again for
        `wait` seconds (LOCK_WAIT_SECONDS, read at the call so it can be tuned) before
        RepositoryLocked (naming the holder)."""
        deadline = time.monotonic() + (LOCK_WAIT_SECONDS if wait is None else wait)
        while True:
            try:
                held = self.store.lock(purpose, LOCK_TTL_SECONDS)
                break
            except RepositoryLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(LOCK_RETRY_SECONDS)
        try:
            yield
        finally:
            try:
                held.release()
            except RepositoryLocked as exc:  # taken over after it expired: nothing to release
                log.warning("%s: %s lock was lost: %s", self.url, purpose, exc)

    @contextmanager
    def deleting(self) -> Iterator[None]:
        """The exclusive lock a delete holds; a live lock elsewhere (after the wait) is
        SetBusy, so retention keeps the set this time and says why."""
        with ExitStack() as held:
            try:
                held.enter_context(self.locked("exclusive"))
            except RepositoryLocked as exc:
                raise locks.SetBusy(f"{self.url} is in use by another host ({exc}); nothing was deleted") from None
            yield

    @contextmanager
    def reading(self, repo: store.Repository, set_ids: Sequence[str]) -> Iterator[None]:
        """While sets are read (restore, verification, copy): a shared lock, and the
        pieces fetched into the cache meanwhile are dropped afterwards (the cache keeps
        manifests and block maps, never a second copy of the repository)."""
        with self.locked("shared"):
            if self.encrypted:
                from . import reencrypt_refresh

                # A re-encryption may have switched sets since the open (reencrypt_refresh.py).
                reencrypt_refresh.recheck(self)
            try:
                yield
            finally:
                for set_id in set_ids:
                    self.trim(repo, set_id)

    def _get(self, rel: str, dest: Path) -> int:
        """Downloads one object to `dest` through a temporary sibling (a cut download
        leaves no file that looks complete). One stream: parallel ranged GETs were
        measured slower against SeaweedFS and took 3x the memory (benches/README.md)."""
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            n = int(self.store.get_to_file(rel, tmp))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return n

    # --- writes ------------------------------------------------------------------------

    def tail(self, staging: Path, set_id: str) -> _core.TailUpload:
        """Starts sending the piece of the set being written in `staging` while the
        backup writes it (storage/tail.rs), so the upload runs alongside the reading
        instead of after it; `commit` finishes it."""
        return self.store.tail_upload(f"{store.SETS_DIR}/{set_id}/{store.PIECE}", staging / store.PIECE)

    def commit(
        self,
        set_dir: Path,
        s: BackupSet,
        limits: UploadSchedule | None = None,
        tail: _core.TailUpload | None = None,
    ) -> None:
        """Uploads a finished set (every file of `set_dir` but the dot files: its pieces
        and block map), then its manifest with a conditional create. Until that last
        request succeeds no one sees the set.
        `limits` paces the upload by time of day (upload_limits.py). A `tail` upload of
        the piece is finished first; what it sent (checked against the piece's size,
        trailer and checksum) is not sent again, and if it gave up the piece goes up
        here as usual."""
        if self.encrypted:
            from . import catalog_record

            # Before the manifest (uploaded last, the commit point): see catalog_record.py.
            catalog_record.write(set_dir, self.cache, s.id)
        skip: list[str] = []
        if tail is not None:
            piece = set_dir / store.PIECE
            try:
                if piece.is_file() and tail.finish(piece.stat().st_size):
                    skip.append(store.PIECE)
            except StorageError as exc:
                log.info("%s: the piece of set %s goes up again: its tail upload failed: %s", self.url, s.id, exc)
        if limits is None:
            self.store.upload_set(set_dir, f"{store.SETS_DIR}/{s.id}", store.MANIFEST, skip=skip)
            return
        pacer = UploadPacer(limits, self.set_upload_limit, lambda: datetime.now(UTC))
        try:
            with pacer.running():
                self.store.upload_set(set_dir, f"{store.SETS_DIR}/{s.id}", store.MANIFEST)
        finally:
            self.set_upload_limit(None)

    def delete_set(self, set_id: str) -> None:
        """Removes a set from the bucket: its manifest first (from then on the set does
        not exist, for every host), then its other objects."""
        set_id = store.check_set_id(set_id)
        prefix = f"{store.SETS_DIR}/{set_id}/"
        self.store.delete(prefix + store.MANIFEST)
        for meta in self.store.list(prefix):
            self.store.delete(meta.key)

    def cleanup(self, tombstones: Collection[str], grace_seconds: float = SWEEP_GRACE_SECONDS) -> list[str]:
        """Finishes the deletes of this host that stopped after the catalog row went (a
        tombstone whose manifest is still in the bucket), then removes what cut uploads
        left once older than the grace period. Returns the keys removed."""
        removed: list[str] = []
        try:
            with self.locked("exclusive", wait=0.0):
                for set_id in sorted(self.remote_manifests().keys() & set(tombstones)):
                    log.warning("%s: finishing the delete of set %s", self.url, set_id)
                    self.delete_set(set_id)
                    removed.append(f"{store.SETS_DIR}/{set_id}/")
                removed += [str(k) for k in self.store.sweep(store.SETS_DIR + "/", grace_seconds)]
                removed += [str(k) for k in self.store.sweep_uploads(store.SETS_DIR + "/", grace_seconds)]
        except RepositoryLocked as exc:
            # Another host is busy in the bucket: its leftovers wait for a later cleanup.
            log.info("%s: cleanup of the bucket skipped: %s", self.url, exc)
        except StorageError as exc:
            # Leftovers are harmless until swept; a backup must not fail for them.
            log.warning("%s: cleanup of the bucket failed, tried again next time: %s", self.url, exc)
        return removed

    def set_upload_limit(self, bytes_per_second: float | None) -> None:
        """Caps the upload rate (None: no cap)."""
        self.store.set_bandwidth_limit(None if bytes_per_second is None else int(bytes_per_second))

    def object_sizes(self, set_ids: Sequence[str]) -> dict[str, int]:
        """Repository-relative path -> size of every object of `set_ids` (one listing)."""
        wanted = set(set_ids)
        out: dict[str, int] = {}
        for meta in self.store.list(store.SETS_DIR + "/"):
            parts = meta.key.split("/")
            if len(parts) == 3 and parts[1] in wanted:
                out[meta.key] = meta.size
        return out


class VerifyItem(Protocol):
    """What `verifying` needs of verify.py's items (a piece or a block map to check)."""

    set_id: str
    kind: str
    path: Path
    size: int | None


ItemT = TypeVar("ItemT", bound=VerifyItem)


@contextmanager
def verifying(
    remote: RemoteRepository, repo: store.Repository, items: Sequence[ItemT], level: str, budget: float | None
) -> Iterator[tuple[list[ItemT], float | None]]:
    """The items of a verification of a remote repository, made checkable by the local
    checks (verify.py), and the budget left for checking them (QUICK: the whole budget;
    STANDARD/FULL: none, the budget was spent choosing what to fetch).

    QUICK reads nothing: one listing of the bucket gives every object's size, and each
    item that is there becomes a sparse file of that size in a scratch directory (the
    presence-and-size check then answers for the object; one that is not there is
    reported missing). STANDARD and FULL stream each object to the cache (least recently
    verified first, as the items come) until the budget is spent; the pieces fetched for
    this run are dropped afterwards, the block maps kept for the next incremental."""
    if level == "quick":
        scratch = repo.root / f".verify-{os.getpid()}-{secrets.token_hex(4)}"
        sizes = remote.object_sizes(sorted({i.set_id for i in items}))
        out: list[ItemT] = []
        try:
            for i in items:
                rel = i.path.relative_to(repo.root).as_posix()
                size = sizes.get(rel)
                stand_in = scratch / rel
                if size is not None:
                    stand_in.parent.mkdir(parents=True, exist_ok=True)
                    with open(stand_in, "wb") as fh:
                        fh.truncate(size)
                # An object absent from the bucket is missing, whatever the cache holds.
                if size is not None or i.path.exists():
                    i = _copy.copy(i)
                    i.path = stand_in
                out.append(i)
            yield out, budget
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    deadline = None if budget is None else time.monotonic() + budget
    fetched: list[Path] = []
    taken: list[ItemT] = []
    # A block map is checked with its parents' maps (small; kept in the cache anyway).
    for set_id in sorted({i.set_id for i in items}):
        try:
            remote.fetch(repo, [set_id], with_pieces=False)
        except (CatalogError, EncryptionError, StorageNotFound, OSError) as exc:
            # Without the key the sealed manifest stays shut: the map is fetched as an item.
            log.debug("block map of %s not fetched before its check: %s", set_id, exc)
    try:
        for i in items:
            # At least one item per run, whatever the budget: repeated runs must progress.
            if deadline is not None and taken and time.monotonic() >= deadline:
                break
            rel = i.path.relative_to(repo.root).as_posix()
            if not (i.path.is_file() and (i.size is None or i.path.stat().st_size == i.size)):
                try:
                    remote._get(rel, i.path)
                except StorageNotFound:
                    pass  # reported missing by the check
                else:
                    if i.kind == "piece":
                        fetched.append(i.path)
            taken.append(i)
        # The budget chose the items (fetching is what costs on a remote repository);
        # every item fetched is checked, or a slow fetch could leave a run that checks
        # nothing and repeated runs that never progress.
        yield taken, None
    finally:
        for f in fetched:
            f.unlink(missing_ok=True)


def _has_key(root: Path) -> bool:
    """Whether a key of the encrypted repository cached at `root` is at hand."""
    from . import keys

    try:
        keys.keys_for(root)
    except EncryptionError:
        return False
    return True


def drop_cache(url: RepoUrl) -> None:
    """Removes a remote repository's local cache (it is rebuilt from the bucket)."""
    d = url.cache_dir()
    if not d.exists():
        return
    if d.is_symlink() or not d.is_dir():
        raise ConfigError(f"{d} is not a cache directory; remove it by hand")
    shutil.rmtree(d)


__all__ = ["RemoteRepository", "SyncReport", "drop_cache"]
