"""A remote repository's cache following re-encrypted sets (reencrypt_remote.py).

Re-encryption replaces a set's ``manifest.json`` (and clear ``catalog.json``) in the
bucket; its pieces and block map get new names and the old ones are deleted. A cache
that keeps the old manifest would read objects that are gone, or a parent's new pieces
with a child's old sources. So on every open (`RemoteRepository.sync`):

- a chain commit in the bucket (``reencrypt/<root>.commit``) is honoured first: for each
  set it names, the manifest whose digest it records is the set (the staged one while
  the switch is under way), so a reader never mixes an old set with a new one, even
  after the re-encrypting process was killed halfway;
- any other cached manifest whose object in the bucket is not the one it was fetched as
  (size, time and ETag of the listing, noted next to it in ``.manifest-stamp``) is
  fetched again and, when its bytes changed, replaces the cached one: the set's cached
  block map, pieces and record are dropped and its catalog row (piece and block map
  names and checksums) is rewritten, from the manifest with a key, from the record
  without one.

A cached manifest without a stamp (written by this host's own backup, or before this
version) is fetched once to compare; the stamp then saves the request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import catalog_record, keys, manifest, store
from .errors import CatalogError, EncryptionError, StorageNotFound

if TYPE_CHECKING:
    from .catalog import BackupCatalog, BackupPiece
    from .remote_repo import RemoteRepository

log = logging.getLogger(__name__)

COMMIT_PREFIX = "reencrypt/"
COMMIT_SUFFIX = ".commit"
STAMP = ".manifest-stamp"


@dataclass(frozen=True)
class Truth:
    """Where a set's current manifest and record are, and what the catalog row says."""

    manifest_key: str
    record_key: str
    map_key: str | None  # a commit's staged block map (the final one may still be old)


def parse_commit(data: bytes, where: str) -> dict[str, Any]:
    """A chain commit object, checked field by field (its set ids and object keys are
    used to build paths and to delete objects)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise CatalogError(f"{where}: not a JSON re-encryption commit ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != 1 or not isinstance(doc.get("sets"), list) or not doc["sets"]:
        raise CatalogError(f"{where}: not a re-encryption commit of format 1 with sets")
    for i, e in enumerate(doc["sets"]):
        at = f"{where}: sets[{i}]"
        if not isinstance(e, dict) or not manifest.is_set_id(e.get("id")):
            raise CatalogError(f"{at}.id: not a set id")
        own = f"{store.SETS_DIR}/{e['id']}/"
        keys_named = [e.get("staged_manifest"), e.get("staged_record"), e.get("staged_map"), *(e.get("old") or [None])]
        nb = e.get("new_blockmap")
        pieces = e.get("new_pieces")
        if not all(isinstance(k, str) and k.startswith(own) and "/" not in k[len(own) :] for k in keys_named):
            raise CatalogError(f"{at}: an object key outside {own}")
        if not (
            isinstance(nb, list) and len(nb) == 2 and all(isinstance(x, str) for x in nb) and nb[0].startswith(own)
        ):
            raise CatalogError(f"{at}.new_blockmap: expected [key under {own}, checksum]")
        if not isinstance(pieces, dict) or not all(
            isinstance(v, list) and len(v) == 3 and isinstance(v[0], int) and str(v[2]).startswith(own)
            for v in pieces.values()
        ):
            raise CatalogError(f"{at}.new_pieces: expected piece id -> [size, checksum, key under {own}]")
        if not isinstance(e.get("manifest_blake2b"), str):
            raise CatalogError(f"{at}.manifest_blake2b: not a digest")
    return doc


def commits(remote: RemoteRepository) -> dict[str, dict[str, Any]]:
    """Set id -> its entry in a chain commit in the bucket (one listing)."""
    out: dict[str, dict[str, Any]] = {}
    for meta in remote.store.list(COMMIT_PREFIX):
        if not meta.key.endswith(COMMIT_SUFFIX):
            continue
        try:
            doc = parse_commit(bytes(remote.store.get_bytes(meta.key)), meta.key)
        except StorageNotFound:
            continue  # finished since the listing: the manifests are final
        except CatalogError as exc:
            # Readers and backups go on with the manifests; `key rotate --reencrypt` stops on it.
            log.warning("%s: ignored: %s", remote.url, exc)
            continue
        for e in doc["sets"]:
            out[str(e["id"])] = e
    return out


def record_key(remote: RemoteRepository, set_id: str) -> str:
    """The clear record a keyless host reads for `set_id` now: a pending commit's staged
    one, else ``sets/<id>/catalog.json``."""
    entry = commits(remote).get(set_id)
    if entry is not None and remote.store.head(str(entry["staged_record"])) is not None:
        return str(entry["staged_record"])
    return f"{store.SETS_DIR}/{set_id}/{catalog_record.RECORD}"


def stamp(remote: RemoteRepository, set_id: str, d: Path) -> None:
    """Notes beside a manifest just fetched the listing it was fetched from (`refresh`
    compares the next listing with it). A manifest replaced between the listing and the
    fetch only costs one more fetch next time."""
    meta = remote.listed.get(set_id)
    if meta is not None:
        store.atomic_write_bytes(d / STAMP, _stamp(meta).encode())


def _stamp(meta: Any) -> str:
    return f"{meta.size} {meta.last_modified.isoformat()} {meta.e_tag or ''}"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


# Rewritten by every switch before it changes a set: a reader that opened the repository
# before a switch and takes its shared lock after it refreshes again (`recheck`).
EPOCH = COMMIT_PREFIX + "epoch"
_seen: weakref.WeakKeyDictionary[RemoteRepository, tuple[str, store.Repository, BackupCatalog]] = (
    weakref.WeakKeyDictionary()
)


def epoch(remote: RemoteRepository) -> str:
    meta = remote.store.head(EPOCH)
    return "" if meta is None else _stamp(meta)


def recheck(remote: RemoteRepository) -> None:
    """Under a reader's shared lock (no switch can run): refreshes the cache again when
    a switch happened since the repository was opened."""
    seen = _seen.get(remote)
    if seen is not None and epoch(remote) != seen[0]:
        remote.remote_manifests()
        refresh(remote, seen[1], seen[2])


def refresh(remote: RemoteRepository, repo: store.Repository, catalog: BackupCatalog) -> list[str]:
    """Brings the cached manifests of registered sets up to date with the bucket (see
    the module's docstring); returns the ids of the sets whose manifest changed."""
    _seen[remote] = (epoch(remote), repo, catalog)
    listed = remote.listed
    pending = commits(remote)
    known = catalog.set_ids()
    changed: dict[str, Truth] = {}
    for sid, meta in sorted(listed.items()):
        d = repo.root / store.SETS_DIR / sid
        cached = d / store.MANIFEST
        entry = pending.get(sid)
        # A set not registered yet is registered from what is cached now: only a
        # commit's set must be replaced first (its cached manifest may be the old one).
        if not cached.is_file() or (sid not in known and entry is None):
            continue
        final = f"{store.SETS_DIR}/{sid}/{store.MANIFEST}"
        if entry is not None:
            if _digest(cached.read_bytes()) == entry["manifest_blake2b"]:
                continue
            truth = Truth(str(entry["staged_manifest"]), str(entry["staged_record"]), str(entry["staged_map"]))
        else:
            stamp = d / STAMP
            if stamp.is_file() and stamp.read_text(encoding="utf-8", errors="replace") == _stamp(meta):
                continue
            truth = Truth(final, f"{store.SETS_DIR}/{sid}/{catalog_record.RECORD}", None)
        tmp = d / f".{store.MANIFEST}.fresh"
        try:
            remote._get(truth.manifest_key, tmp)
        except StorageNotFound:
            # A staged manifest deleted as the switch finished: the final one is it now.
            remote._get(final, tmp)
            truth = Truth(final, f"{store.SETS_DIR}/{sid}/{catalog_record.RECORD}", None)
        if tmp.read_bytes() == cached.read_bytes():
            tmp.unlink()
        else:
            if sid in known:
                changed[sid] = truth
            _drop_cached(d)
            os.replace(tmp, cached)
            if truth.map_key is not None:
                # The staged map and record go with the staged manifest (the final
                # objects may still be the old ones, or already the new ones).
                _get_either(remote, truth.map_key, f"{store.SETS_DIR}/{sid}/{store.BLOCKMAP}", d / store.BLOCKMAP)
                _get_either(
                    remote,
                    truth.record_key,
                    f"{store.SETS_DIR}/{sid}/{catalog_record.RECORD}",
                    d / catalog_record.RECORD,
                )
        if truth.manifest_key == final:
            store.atomic_write_bytes(d / STAMP, _stamp(meta).encode())
    if changed:
        _rewrite_rows(remote, repo, catalog, changed)
        log.info("%s: %d re-encrypted set(s) refreshed in the cache", remote.url, len(changed))
    return sorted(changed)


def _get_either(remote: RemoteRepository, staged: str, final: str, dest: Path) -> None:
    """`staged` into `dest`, or `final` once the switch moved it there and deleted it."""
    try:
        remote._get(staged, dest)
    except StorageNotFound:
        remote._get(final, dest)


def _drop_cached(d: Path) -> None:
    """Everything a set's cache directory holds but its manifest (old map, pieces,
    record, stamp): named by the old manifest, they are not the set any more."""
    for p in d.iterdir():
        if p.name != store.MANIFEST and not p.name.startswith(f".{store.MANIFEST}"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _pieces(set_id: str, m: manifest.Manifest) -> list[BackupPiece]:
    from .catalog import BackupPiece

    return [BackupPiece(p.id, set_id, p.path, p.size, p.checksum, p.algorithm, p.block_count) for p in m.pieces]


def _rewrite_rows(
    remote: RemoteRepository, repo: store.Repository, catalog: BackupCatalog, changed: dict[str, Truth]
) -> None:
    """The catalog rows of `changed` sets from their new manifests (a host with the key)
    or their new clear records (a host without)."""
    rows: dict[str, tuple[Sequence[BackupPiece], str, str]] = {}
    readable = keys.can_read(repo.root)
    for sid, truth in changed.items():
        d = repo.root / store.SETS_DIR / sid
        try:
            if readable:
                m = manifest.load(d / store.MANIFEST, set_id=sid)
                rows[sid] = (_pieces(sid, m), m.blockmap.path, m.blockmap.checksum)
            else:
                final = f"{store.SETS_DIR}/{sid}/{catalog_record.RECORD}"
                _get_either(remote, truth.record_key, final, d / catalog_record.RECORD)
                where = truth.record_key
                s = catalog_record.parse((d / catalog_record.RECORD).read_bytes(), sid, where).backup_set
                rows[sid] = (s.pieces, s.blockmap, s.blockmap_checksum)
        except (CatalogError, EncryptionError, StorageNotFound) as exc:
            log.warning("%s: set %s changed in the bucket and cannot be read again: %s", remote.url, sid, exc)
    catalog.replace_sealed(rows)


def adopt(
    remote: RemoteRepository,
    repo: store.Repository,
    catalog: BackupCatalog,
    doc: dict[str, Any],
    build: Path | None,
) -> None:
    """The re-encrypting host's cache after it switched a committed tree: the new
    manifests (and block maps, when this run built them), stamps and catalog rows."""
    rows: dict[str, tuple[Sequence[BackupPiece], str, str]] = {}
    known = catalog.set_ids()
    for e in doc["sets"]:
        sid = store.check_set_id(str(e["id"]))
        d = repo.root / store.SETS_DIR / sid
        d.mkdir(parents=True, exist_ok=True)
        _drop_cached(d)
        final = f"{store.SETS_DIR}/{sid}/{store.MANIFEST}"
        built = None if build is None else build / sid
        if built is not None and (built / store.MANIFEST).is_file():
            os.replace(built / store.MANIFEST, d / store.MANIFEST)
            if (built / store.BLOCKMAP).is_file():
                os.replace(built / store.BLOCKMAP, d / store.BLOCKMAP)
        else:
            remote._get(final, d / store.MANIFEST)
        meta = remote.store.head(final)
        if meta is not None:
            store.atomic_write_bytes(d / STAMP, _stamp(meta).encode())
        if sid in known:
            m = manifest.load(d / store.MANIFEST, set_id=sid)
            rows[sid] = (_pieces(sid, m), m.blockmap.path, m.blockmap.checksum)
    catalog.replace_sealed(rows)


__all__ = [
    "COMMIT_PREFIX",
    "COMMIT_SUFFIX",
    "adopt",
    "commits",
    "parse_commit",
    "recheck",
    "record_key",
    "refresh",
    "stamp",
]
