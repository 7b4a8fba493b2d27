"""``key rotate --reencrypt`` on an ``s3://`` repository: reencrypt.py's chain-by-chain
re-sealing, with objects instead of directories.

A bucket has no rename and no directory swap, so a re-sealed set's pieces get *new*
object names (``sets/<id>/data.<gen>-<run>.piece``; ``<run>`` is random per run, so two
hosts re-encrypting at once never overwrite each other's objects). The manifest format
fixes the block map's name (``sets/<id>/blockmap``), so the new map, like the new
manifest and clear record, is *staged* under another key until the switch puts it in
place. A chain tree (reencrypt.py: a set without a parent and its descendants) switches
by one small object:

1. **Build** (the tree's reader locks and the shared lock object: restores, checks and
   backups go on, no host deletes the sets): for each set, parents first, each old piece
   is streamed from the bucket to a file in the cache (never whole in memory),
   re-sealed (reseal_piece) under a new set key and uploaded under its new name; the
   block map re-sealed (reseal_map, with its parent's new checksum), the new manifest
   (new piece names, sources and checksums) and its clear catalog record
   (catalog_record.py) uploaded as ``sets/<id>/blockmap.<tag>``,
   ``manifest.<tag>.json`` and ``catalog.<tag>.json``, which no reader takes for a set.
   Nothing a reader uses changed. Each key is noted in the cache before its upload
   (``reencrypt/<root>.uploads``), so a killed run's leftovers are removed by the next.
2. **Commit** (under the exclusive lock object: no reader or backup anywhere, and no new
   child joined the tree meanwhile): ``reencrypt/<root>.commit`` is created with
   If-None-Match, naming every set's staged objects, old pieces and new manifest digest.
   From then on the new tree is the truth: a reader that finds the commit takes each
   set's staged manifest, map and record (reencrypt_refresh.py), so a kill during step 3
   shows no reader a mix of old and new sets.
3. **Switch** (same lock; rolled forward by the next run after a kill): the epoch object
   is rewritten (readers that opened before re-read under their lock), each set's map,
   record and then manifest are put in place, the cache and its catalog rows follow,
   then the old pieces, the staged objects and the commit are deleted. Other hosts see
   the replaced manifests on their next open (reencrypt_refresh.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core, catalog_record, keys, locks, manifest, reencrypt_refresh, store
from .catalog import BackupSet
from .errors import EncryptionError, RepositoryLocked, StorageNotFound
from .locks import SetBusy
from .reencrypt import (
    ReencryptReport,
    SetRekey,
    each_stale_tree,
    opening_keys,
    parent_map_sum,
    refuse_unfinished,
    set_generations,
    switched,
    write_sealed_manifest,
)

if TYPE_CHECKING:
    from .engine import BackupManager
    from .remote_repo import RemoteRepository

log = logging.getLogger(__name__)

WORK_DIR = "reencrypt"
UPLOADS_SUFFIX = ".uploads"


@dataclasses.dataclass(frozen=True)
class _Names:
    """The new object names of one set in one run."""

    set_id: str
    tag: str  # "<generation>-<run>"

    def piece(self, old_name: str) -> str:
        stem = old_name.split(".", 1)[0] or "data"
        return f"{stem}.{self.tag}.piece"

    @property
    def staged_map(self) -> str:
        return f"{store.SETS_DIR}/{self.set_id}/{store.BLOCKMAP}.{self.tag}"

    @property
    def staged_manifest(self) -> str:
        return f"{store.SETS_DIR}/{self.set_id}/manifest.{self.tag}.json"

    @property
    def staged_record(self) -> str:
        return f"{store.SETS_DIR}/{self.set_id}/catalog.{self.tag}.json"


def reencrypt(
    manager: BackupManager,
    *,
    drop_old: bool = False,
    progress: Callable[[dict[str, Any]], object] | None = None,
) -> ReencryptReport:
    """Re-encrypts every set of the bucket not under the current generation (see the
    module's docstring)."""
    remote = manager.remote
    assert remote is not None
    root = manager.repo.root
    opened = opening_keys(root, str(remote.url))
    report = ReencryptReport(opened.current)

    def cleanup(ids: list[str]) -> None:
        shutil.rmtree(_work(root) / "build", ignore_errors=True)
        if ids[0] in report.postponed or ids[0] in report.failed:
            _clear_uploads(manager, only=ids[0])

    with locks.reencrypt_lock(root):
        _finish_commits(manager, report)
        _clear_uploads(manager)
        tag = f"{opened.current}-{secrets.token_hex(3)}"
        each_stale_tree(
            root,
            manager.catalog.list_sets(),
            opened,
            report,
            lambda tree: _reencrypt_tree(manager, opened, tree, tag, report, progress),
            cleanup,
        )
        if drop_old:
            _drop_old(manager, opened, report)
    return report


def pending(manager: BackupManager) -> bool:
    """A commit in the bucket waits to be finished (reencrypt.pending asks the rest)."""
    remote = manager.remote
    return remote is not None and bool(commit_objects(remote))


def commit_objects(remote: RemoteRepository) -> list[str]:
    """Keys of the chain commits in the bucket."""
    return [
        m.key
        for m in remote.store.list(reencrypt_refresh.COMMIT_PREFIX)
        if m.key.endswith(reencrypt_refresh.COMMIT_SUFFIX)
    ]


def _work(root: Path) -> Path:
    return root / WORK_DIR


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


@contextmanager
def _exclusive(remote: RemoteRepository, what: str) -> Iterator[None]:
    """The exclusive lock object, or SetBusy (the tree is postponed) while other hosts
    hold theirs past the wait."""
    try:
        with remote.locked("exclusive"):
            yield
    except RepositoryLocked as exc:
        raise SetBusy(f"{what}: the bucket is in use ({exc}); it is switched on a later run") from None


# --- the uploads a run made before its commit ---------------------------------------------


def _note_upload(root: Path, tree: str, set_id: str, key: str) -> None:
    """Records `key` before it is uploaded, so a killed run's object is found again."""
    path = _work(root) / f"{tree}{UPLOADS_SUFFIX}"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps([set_id, key]) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _clear_uploads(manager: BackupManager, only: str | None = None) -> None:
    """Deletes from the bucket what an uncommitted run uploaded (its `.uploads` notes),
    except the objects a set's manifest names now (a commit another run finished)."""
    remote = manager.remote
    assert remote is not None
    work = _work(manager.repo.root)
    notes = sorted(work.glob(f"*{UPLOADS_SUFFIX}")) if work.is_dir() else []
    # A commit still waiting (its switch postponed) owns its objects, whatever the notes say.
    committed = (
        {
            str(k)
            for e in reencrypt_refresh.commits(remote).values()
            for k in [
                e["staged_manifest"],
                e["staged_record"],
                e["staged_map"],
                *(v[2] for v in e["new_pieces"].values()),
            ]
        }
        if notes
        else set()
    )
    for note in notes:
        if only is not None and note.name != f"{only}{UPLOADS_SUFFIX}":
            continue
        by_set: dict[str, set[str]] = {}
        for line in note.read_text(encoding="utf-8").splitlines():
            try:
                sid, key = json.loads(line)
            except ValueError:
                continue  # the last line of a run killed while writing it
            if manifest.is_set_id(sid) and isinstance(key, str) and key.startswith(f"{store.SETS_DIR}/{sid}/"):
                by_set.setdefault(sid, set()).add(key)
        for sid, uploaded in sorted(by_set.items()):
            live = _live_objects(manager, sid)
            for key in sorted(uploaded - live - committed):
                remote.store.delete(key)
        note.unlink()


def _live_objects(manager: BackupManager, set_id: str) -> set[str]:
    """The objects the set's manifest in the bucket names (none when it has none)."""
    remote = manager.remote
    assert remote is not None
    # Two levels below the cache root, as manifest.load finds the keys of a set's manifest.
    dest = _work(manager.repo.root) / set_id / store.MANIFEST
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        remote._get(f"{store.SETS_DIR}/{set_id}/{store.MANIFEST}", dest)
        m = manifest.load(dest, set_id=set_id)
    except StorageNotFound:
        return set()
    finally:
        shutil.rmtree(dest.parent, ignore_errors=True)
    return {p.path for p in m.pieces} | {m.blockmap.path}


# --- build -------------------------------------------------------------------------------


def _reencrypt_tree(
    manager: BackupManager,
    opened: keys.Keys,
    tree: list[BackupSet],
    tag: str,
    report: ReencryptReport,
    progress: Callable[[dict[str, Any]], object] | None,
) -> None:
    remote = manager.remote
    assert remote is not None
    root = manager.repo.root
    ids = [s.id for s in tree]
    build = _work(root) / "build"
    new_maps: dict[str, bytes] = {}  # set id -> its new map's checksum
    entries: list[dict[str, Any]] = []
    map_keys: list[bytes] = []
    resealed = 0
    with manager.reading(ids):
        for s in tree:
            names = _Names(s.id, tag)
            out = build / s.id
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            m = manifest.load(root / s.manifest, set_id=s.id)
            k = SetRekey.draw(root, opened, s.id)
            map_keys.append(k.new_map)
            pieces = []
            renamed: dict[tuple[str, str], str] = {}
            for p in m.pieces:
                old_name = p.path.rsplit("/", 1)[-1]
                new_name = names.piece(old_name)
                size, checksum = _reseal_piece(manager, ids[0], s.id, p.path, out, new_name, k.old_blocks, k.new_blocks)
                pieces.append(
                    dataclasses.replace(
                        p,
                        id=f"{s.id}/{new_name}",
                        path=f"{store.SETS_DIR}/{s.id}/{new_name}",
                        size=size,
                        checksum=checksum,
                    )
                )
                renamed[(s.id, old_name)] = new_name
                resealed += size
            parent = parent_map_sum(m, new_maps)
            remote.fetch(manager.repo, [s.id], with_pieces=False)
            # Built under its final name (a sealed map's frames are bound to its set and
            # file name); staged under another key until the switch puts it in place.
            map_sum = _core.reseal_map(root / m.blockmap.path, out / store.BLOCKMAP, k.old_map, k.new_map, parent)
            new_maps[s.id] = bytes.fromhex(map_sum)
            _note_upload(root, ids[0], s.id, names.staged_map)
            remote.store.put_file(names.staged_map, out / store.BLOCKMAP)
            sources = tuple(dataclasses.replace(src, piece=_renamed_source(src, entries, renamed)) for src in m.sources)
            new_m = dataclasses.replace(
                m,
                pieces=tuple(pieces),
                blockmap=dataclasses.replace(m.blockmap, checksum=map_sum),
                sources=sources,
            )
            write_sealed_manifest(root, opened, new_m, k.new_key, out / store.MANIFEST)
            catalog_record.write(out, root, s.id)
            for name, key in ((store.MANIFEST, names.staged_manifest), (catalog_record.RECORD, names.staged_record)):
                _note_upload(root, ids[0], s.id, key)
                remote.store.put_file(key, out / name)
            entries.append(
                {
                    "id": s.id,
                    "manifest_blake2b": _digest((out / store.MANIFEST).read_bytes()),
                    "staged_manifest": names.staged_manifest,
                    "staged_record": names.staged_record,
                    "staged_map": names.staged_map,
                    "old": sorted(p.path for p in m.pieces),
                    "new_pieces": {p.id: [p.size, p.checksum, p.path] for p in pieces},
                    "new_blockmap": [m.blockmap.path, map_sum],
                    "renamed": [[k[0], k[1], v] for k, v in renamed.items()],
                }
            )
            if progress is not None:
                progress({"event": "resealed", "set": s.id, "chain": ids[0], "bytes": resealed})
    doc = {"format": 1, "generation": opened.current, "root": ids[0], "sets": entries}
    with _exclusive(remote, f"chain of {ids[0]}"):
        # Sets another host published meanwhile, one of them a child of this tree, would
        # name the old parent map.
        remote.sync(manager.repo, manager.catalog)
        children = {c for sid in ids for c in manager.catalog.children(sid)}
        if not children <= set(ids):
            raise SetBusy(f"new sets joined the chain of {ids[0]} while it was re-sealed; it is redone next run")
        key = f"{reencrypt_refresh.COMMIT_PREFIX}{ids[0]}{reencrypt_refresh.COMMIT_SUFFIX}"
        if not remote.store.put_bytes_if_absent(key, json.dumps(doc, sort_keys=True).encode()):
            raise SetBusy(f"chain of {ids[0]}: another run committed it first; it is looked at again next run")
        # The uploads are the commit's now: never removed as leftovers.
        (_work(root) / f"{ids[0]}{UPLOADS_SUFFIX}").unlink(missing_ok=True)
        _switch(manager, key, doc, build)
    switched(report, ids, map_keys, resealed, progress)


def _renamed_source(src: manifest.Source, entries: list[dict[str, Any]], own: dict[tuple[str, str], str]) -> str:
    """The new file name of a source piece: the set's own, or an ancestor's renamed in
    this tree (a source outside the tree keeps its name)."""
    if (src.set_id, src.piece) in own:
        return own[(src.set_id, src.piece)]
    for e in entries:
        for set_id, old, new in e["renamed"]:
            if (set_id, old) == (src.set_id, src.piece):
                return str(new)
    return src.piece


def _reseal_piece(
    manager: BackupManager,
    tree: str,
    set_id: str,
    rel: str,
    out: Path,
    new_name: str,
    old: tuple[bytes, bytes],
    new: tuple[bytes, bytes],
) -> tuple[int, str]:
    """Streams one old piece from the bucket to disk (never whole in memory), re-seals
    it under its new name (a sealed block's label is its set and file name) and uploads
    it; returns (size, checksum)."""
    remote = manager.remote
    assert remote is not None
    src = out.parent / ".old" / set_id / rel.rsplit("/", 1)[-1]
    src.parent.mkdir(parents=True, exist_ok=True)
    try:
        remote._get(rel, src)
        size, checksum, _count = _core.reseal_piece(src, out / new_name, old, new)
    finally:
        src.unlink(missing_ok=True)
    key = f"{store.SETS_DIR}/{set_id}/{new_name}"
    _note_upload(manager.repo.root, tree, set_id, key)
    try:
        remote.store.put_file(key, out / new_name)
    finally:
        (out / new_name).unlink(missing_ok=True)
    return size, checksum


# --- switch ------------------------------------------------------------------------------


def _switch(manager: BackupManager, key: str, doc: dict[str, Any], build: Path | None) -> None:
    """Rolls a committed tree forward (idempotent: a kill at any point is finished by the
    next run): records and manifests replaced, the cache and catalog rows brought along,
    then the old and staged objects and the commit deleted. The exclusive lock is held."""
    remote = manager.remote
    assert remote is not None
    root = manager.repo.root
    remote.store.put_bytes(reencrypt_refresh.EPOCH, f"{key} {secrets.token_hex(8)}\n".encode())
    for e in doc["sets"]:
        sid = store.check_set_id(str(e["id"]))
        final = f"{store.SETS_DIR}/{sid}/{store.MANIFEST}"
        if _digest(bytes(remote.store.get_bytes(final))) != e["manifest_blake2b"]:
            # The map and the record before the manifest, as a backup's commit orders them.
            staged_files = (
                (e["staged_map"], store.BLOCKMAP),
                (e["staged_record"], catalog_record.RECORD),
                (e["staged_manifest"], store.MANIFEST),
            )
            for staged, name in staged_files:
                tmp = _work(root) / f".switch-{sid}-{name}"
                try:
                    remote._get(str(staged), tmp)
                    remote.store.put_file(f"{store.SETS_DIR}/{sid}/{name}", tmp)
                finally:
                    tmp.unlink(missing_ok=True)
    reencrypt_refresh.adopt(remote, manager.repo, manager.catalog, doc, build)
    for e in doc["sets"]:
        for old in [*e["old"], e["staged_manifest"], e["staged_record"], e["staged_map"]]:
            remote.store.delete(str(old))
    remote.store.delete(key)


def _finish_commits(manager: BackupManager, report: ReencryptReport) -> None:
    """Rolls forward every tree a killed run (of any host) committed but did not finish."""
    remote = manager.remote
    assert remote is not None
    for key in commit_objects(remote):
        try:
            doc = reencrypt_refresh.parse_commit(bytes(remote.store.get_bytes(key)), key)
        except StorageNotFound:
            continue  # finished by another host since the listing
        ids = [str(e["id"]) for e in doc["sets"]]
        try:
            with _exclusive(remote, f"chain of {ids[0]}"):
                _switch(manager, key, doc, None)
        except SetBusy as exc:
            report.postponed[ids[0]] = str(exc)
            continue
        log.info("finished switching the re-encrypted chain of %s", ids[0])
        report.reencrypted.extend(ids)


def _drop_old(manager: BackupManager, opened: keys.Keys, report: ReencryptReport) -> None:
    remote = manager.remote
    assert remote is not None
    refuse_unfinished(str(remote.url), report)
    from . import remote_keys

    with remote_keys.editing(remote.url, exclusive=True) as root:
        # Under the exclusive lock: a set another host published meanwhile counts too.
        remote.sync(manager.repo, manager.catalog)
        left = set_generations(root, [s.id for s in manager.catalog.list_sets()])
        if None in left.values() or commit_objects(remote):
            raise EncryptionError(f"{remote.url}: old key generations are kept: a set's manifest cannot be read")
        report.dropped = keys.drop_generations(root, opened, {g for g in left.values() if g is not None})


__all__ = ["commit_objects", "pending", "reencrypt"]
