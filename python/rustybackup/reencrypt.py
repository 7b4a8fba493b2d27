"""``rustybackup key rotate --reencrypt``: re-encrypts old sets under the current key
generation, chain by chain, resumably, while the repository stays in use.

Why a chain, not a set: a child's block map records its parent map's checksum
(docs/FORMAT.md "Block map, version 2", ``parent_sum``), and a re-sealed map has a new
one. So the unit is a *chain tree* (a set without a parent and every set that descends
from it). For each tree that holds a set under an older generation:

1. **Build** (shared reader locks: restores and verifications go on, nothing deletes the
   sets): every set of the tree, parents first, gets a new random set key; each piece
   is re-sealed block by block into ``REPO/reencrypt/<set>/`` (Rust, ``reseal_piece``:
   every block opened with the old key and its keyed digest checked first, so a damaged
   block stops the tree with an error naming set, piece, file, block and offset), the
   block map re-sealed with the new map key and its parent's new checksum
   (``reseal_map``), and a new manifest (new piece checksums, new map checksum) is
   sealed in an envelope wrapped to the current generation. Nothing in ``sets/`` changes.
2. **Commit**: ``REPO/reencrypt/<root>.commit`` names the tree's sets and their new
   manifests' digests, written atomically once every new file is durable. Before it, a
   kill leaves only work files, which the next run removes and rebuilds.
3. **Switch** (`locks.ReaderLocks.switching`: the tree's sets exclusively, no backup
   creating or running, held for renames only): each set's new directory is swapped
   with its ``sets/<id>/`` by one ``renameat2(RENAME_EXCHANGE)``, so a reader finds the
   old set or the new one, never a mix; then the catalog rows (piece checksums, map
   checksum) in one transaction; only then are the old directories removed and the
   commit file. A kill after the commit is rolled forward by the next run (each set's
   manifest digest tells whether its swap happened); until then a child whose parent was
   already swapped does not open (its map names the old parent map), which is why the
   switch holds every lock of the tree and the next run finishes it first.

A run that finds a tree's sets busy (a restore reading one, a backup running) leaves
that tree for the next run (``postponed``); the others go on. With ``drop_old`` and
every set under the current generation, the older generations' secrets are removed
from the keyring (keys.drop_generations).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core, keys, locks, manifest, store
from .catalog import BackupSet
from .copy import in_copy_order
from .errors import EncryptionError, RustyBackupError
from .locks import SetBusy

if TYPE_CHECKING:
    from .engine import BackupManager

log = logging.getLogger(__name__)

WORK_DIR = "reencrypt"
COMMIT_SUFFIX = ".commit"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass
class ReencryptReport:
    """What one run did: sets re-encrypted, sets already under the current generation,
    trees left for a later run (why), trees that failed (why), generations dropped."""

    generation: str
    reencrypted: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    postponed: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    bytes_resealed: int = 0

    @property
    def done(self) -> bool:
        """Every set is under the current generation."""
        return not self.postponed and not self.failed

    def as_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "done": self.done,
            "reencrypted": self.reencrypted,
            "current": self.current,
            "postponed": self.postponed,
            "failed": self.failed,
            "dropped": self.dropped,
            "bytes_resealed": self.bytes_resealed,
        }


def set_generations(root: Path, set_ids: list[str]) -> dict[str, str | None]:
    """The key generation each set's manifest is wrapped to (no key needed); None when
    its manifest cannot be read."""
    out: dict[str, str | None] = {}
    for sid in set_ids:
        try:
            out[sid] = str(keys.stored_envelope(root, sid).get("generation"))
        except EncryptionError:
            out[sid] = None
    return out


@dataclass(frozen=True)
class SetRekey:
    """One set's keys in a re-sealing: its stored keys, and a new random set key with
    the block keys and map key it gives."""

    old_blocks: tuple[bytes, bytes]
    old_map: bytes
    new_key: bytes
    new_blocks: tuple[bytes, bytes]
    new_map: bytes

    @classmethod
    def draw(cls, root: Path, opened: keys.Keys, set_id: str) -> SetRekey:
        old_key, _gen = keys.stored_set_key(root, set_id)
        old_blocks, old_map = keys.set_key_parts(opened, old_key)
        new_key = secrets.token_bytes(32)
        new_blocks, new_map = keys.set_key_parts(opened, new_key)
        return cls(old_blocks, old_map, new_key, new_blocks, new_map)


def parent_map_sum(m: manifest.Manifest, new_maps: dict[str, bytes]) -> bytes | None:
    """The new checksum of `m`'s parent's map, re-sealed earlier in the same tree (None
    for a set without a parent)."""
    if m.record.parent_id is None:
        return None
    if m.record.parent_id not in new_maps:
        raise EncryptionError(f"set {m.id}: its parent {m.record.parent_id} is not in its chain")
    return new_maps[m.record.parent_id]


def chain_trees(sets: list[BackupSet]) -> list[list[BackupSet]]:
    """`sets` grouped by the set without a parent they descend from, parents first. A
    set whose parent is not among `sets` starts a tree of its own."""
    by_id = {s.id: s for s in sets}

    def root_of(s: BackupSet) -> str:
        seen = {s.id}
        while s.parent_id is not None and s.parent_id in by_id and s.parent_id not in seen:
            s = by_id[s.parent_id]
            seen.add(s.id)
        return s.id

    groups: dict[str, list[BackupSet]] = {}
    for s in in_copy_order(sets):
        groups.setdefault(root_of(s), []).append(s)
    return list(groups.values())


def reencrypt(
    manager: BackupManager,
    *,
    drop_old: bool = False,
    progress: Callable[[dict[str, Any]], object] | None = None,
) -> ReencryptReport:
    """Re-encrypts every set not under the current generation (see the module's
    docstring); `progress` gets one event per set re-sealed and per tree switched."""
    if manager.remote is not None:
        from . import reencrypt_remote

        return reencrypt_remote.reencrypt(manager, drop_old=drop_old, progress=progress)
    root = manager.repo.root
    opened = opening_keys(root, str(root))
    report = ReencryptReport(opened.current)
    with locks.reencrypt_lock(root):
        _finish_commits(manager, report)
        _clear_uncommitted(root)
        each_stale_tree(
            root,
            manager.catalog.list_sets(),
            opened,
            report,
            lambda tree: _reencrypt_tree(manager, opened, tree, report, progress),
            lambda ids: _clear_uncommitted_tree(root, ids),
        )
        if drop_old:
            _drop_old(manager, opened, report)
    return report


def opening_keys(root: Path, name: str) -> keys.Keys:
    """The repository's keys for a re-encryption run; `name` (its path or URL) is what an
    unencrypted repository's error names."""
    opened = keys.reading_keys(root)
    if opened is None:
        raise EncryptionError(f"{name}: the repository is not encrypted; there is nothing to re-encrypt")
    return opened


def each_stale_tree(
    root: Path,
    sets: list[BackupSet],
    opened: keys.Keys,
    report: ReencryptReport,
    reencrypt_tree: Callable[[list[BackupSet]], None],
    cleanup: Callable[[list[str]], None],
) -> None:
    """Runs `reencrypt_tree` on every chain tree with a set not under the current
    generation; a busy tree is postponed and a failing one noted, and the others go on.
    `cleanup` gets each attempted tree's ids afterwards, whatever happened."""
    gens = set_generations(root, [s.id for s in sets])
    for tree in chain_trees(sets):
        ids = [s.id for s in tree]
        if all(gens[i] == opened.current for i in ids):
            report.current.extend(i for i in ids if i not in report.reencrypted)
            continue
        try:
            reencrypt_tree(tree)
        except SetBusy as exc:
            report.postponed[ids[0]] = str(exc)
        except (RustyBackupError, OSError) as exc:
            log.warning("re-encryption of the chain of %s failed: %s", ids[0], exc)
            report.failed[ids[0]] = failure_message(exc)
        finally:
            cleanup(ids)


def _clear_uncommitted_tree(root: Path, ids: list[str]) -> None:
    # A committed tree's new files are what the next run switches to.
    if not (_work(root) / f"{ids[0]}{COMMIT_SUFFIX}").exists():
        for sid in ids:
            shutil.rmtree(_work(root) / sid, ignore_errors=True)


def refuse_unfinished(name: str, report: ReencryptReport) -> None:
    """The error `--drop-old` gives while a chain is postponed or failed; `name` is the
    repository's path or URL."""
    if not report.done:
        raise EncryptionError(
            f"{name}: old key generations are kept: {len(report.postponed) + len(report.failed)} chain(s) "
            "are not re-encrypted yet (see postponed/failed); run `key rotate --reencrypt --drop-old` again"
        )


def _drop_old(manager: BackupManager, opened: keys.Keys, report: ReencryptReport) -> None:
    root = manager.repo.root
    refuse_unfinished(str(root), report)
    left = set_generations(root, [s.id for s in manager.catalog.list_sets()])
    if None in left.values():
        raise EncryptionError(f"{root}: old key generations are kept: a set's manifest cannot be read")
    report.dropped = keys.drop_generations(root, opened, {g for g in left.values() if g is not None})


def _clear_uncommitted(root: Path) -> None:
    """Removes what a killed run built but never committed (it is rebuilt from scratch)."""
    work = _work(root)
    for entry in sorted(work.iterdir()) if work.is_dir() else []:
        if entry.is_dir() and manifest.is_set_id(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def pending(manager: BackupManager) -> bool:
    """Whether a set is under another generation than the current one (a rotation whose
    re-encryption is not finished), or a killed run left a commit to finish."""
    root = manager.repo.root
    opened = keys.reading_keys(root)
    if opened is None:
        return False
    work = _work(root)
    if work.is_dir() and any(work.glob(f"*{COMMIT_SUFFIX}")):
        return True
    if manager.remote is not None:
        from . import reencrypt_remote

        if reencrypt_remote.pending(manager):
            return True
    gens = set_generations(root, [s.id for s in manager.catalog.list_sets()])
    return any(g != opened.current for g in gens.values())


def failure_message(exc: BaseException) -> str:
    """A failed tree's reason for the report: an OSError names its file."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def _work(root: Path) -> Path:
    return root / WORK_DIR


def _reencrypt_tree(
    manager: BackupManager,
    opened: keys.Keys,
    tree: list[BackupSet],
    report: ReencryptReport,
    progress: Callable[[dict[str, Any]], object] | None,
) -> None:
    root = manager.repo.root
    work = _work(root)
    work.mkdir(exist_ok=True)
    ids = [s.id for s in tree]
    new_maps: dict[str, bytes] = {}
    map_keys: list[bytes] = []
    digests: dict[str, str] = {}
    rows: dict[str, tuple[dict[str, tuple[int, str]], str]] = {}
    resealed = 0
    with manager.readers.reading(ids):
        for s in tree:
            out = work / s.id
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            m = manifest.load(root / s.manifest, set_id=s.id)
            k = SetRekey.draw(root, opened, s.id)
            map_keys.append(k.new_map)
            pieces = []
            for p in m.pieces:
                name = p.path.rsplit("/", 1)[-1]
                size, checksum, _count = _core.reseal_piece(root / p.path, out / name, k.old_blocks, k.new_blocks)
                pieces.append(dataclasses.replace(p, size=size, checksum=checksum))
                resealed += size
            parent = parent_map_sum(m, new_maps)
            map_name = m.blockmap.path.rsplit("/", 1)[-1]
            map_sum = _core.reseal_map(root / m.blockmap.path, out / map_name, k.old_map, k.new_map, parent)
            new_maps[s.id] = bytes.fromhex(map_sum)
            new_m = dataclasses.replace(
                m, pieces=tuple(pieces), blockmap=dataclasses.replace(m.blockmap, checksum=map_sum)
            )
            write_sealed_manifest(root, opened, new_m, k.new_key, out / store.MANIFEST)
            digests[s.id] = _digest(out / store.MANIFEST)
            rows[s.id] = ({p.id: (p.size, p.checksum) for p in pieces}, map_sum)
            store.fsync_dir(out)
            if progress is not None:
                progress({"event": "resealed", "set": s.id, "chain": ids[0], "bytes": resealed})
    store.fsync_dir(work)
    commit = work / f"{ids[0]}{COMMIT_SUFFIX}"
    doc = {"sets": [{"id": sid, "manifest_blake3": digests[sid], "catalog": rows[sid]} for sid in ids]}
    with manager.readers.switching(root, ids):
        # A set published meanwhile under one of these would name the old parent map.
        children = {c for sid in ids for c in manager.catalog.children(sid)}
        if not children <= set(ids):
            raise SetBusy(f"new sets joined the chain of {ids[0]} while it was re-sealed; it is redone next run")
        store.atomic_write_bytes(commit, json.dumps(doc).encode())
        _switch(manager, commit, doc)
    switched(report, ids, map_keys, resealed, progress)


def switched(
    report: ReencryptReport,
    ids: list[str],
    map_keys: list[bytes],
    resealed: int,
    progress: Callable[[dict[str, Any]], object] | None,
) -> None:
    """Notes a switched tree in the report and tells `progress`."""
    # This process's readers and backups open the new maps without reading the manifests
    # again (a backup of a child finds its parent's map key loaded).
    for key in map_keys:
        _core.blockmap_read_key(key)
    report.reencrypted.extend(ids)
    report.bytes_resealed += resealed
    if progress is not None:
        progress({"event": "switched", "chain": ids[0], "sets": ids})


def write_sealed_manifest(root: Path, opened: keys.Keys, m: manifest.Manifest, set_key: bytes, path: Path) -> None:
    """`m` sealed under `set_key` into `path` (manifest.write's envelope, for a directory
    outside ``sets/``)."""
    text = manifest.document(m)
    manifest.loads(text, str(path))
    previous = opened.set_keys.get(m.id)
    opened.set_keys[m.id] = set_key
    try:
        env = keys.seal_manifest(root, m.id, text)
    finally:
        if previous is None:
            opened.set_keys.pop(m.id, None)
        else:
            opened.set_keys[m.id] = previous
    store.write_durable_json(path, env)


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=32).hexdigest()


def _exchange(a: Path, b: Path) -> None:
    """Swaps two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot swap the directories ({os.strerror(err)})", str(a))


def _switch(manager: BackupManager, commit: Path, doc: dict[str, Any]) -> None:
    """Rolls a committed tree forward: swaps each set not yet swapped, records the new
    rows, then removes the old files and the commit. Safe to run again after a kill at
    any point."""
    root = manager.repo.root
    work = _work(root)
    for entry in doc["sets"]:
        sid = store.check_set_id(str(entry["id"]))
        live = manager.repo.set_dir(sid)
        if _digest(live / store.MANIFEST) != entry["manifest_blake3"]:
            _exchange(work / sid, live)
    store.fsync_dir(root / store.SETS_DIR)
    store.fsync_dir(work)
    manager.catalog.update_sealed({str(e["id"]): (_rows(e["catalog"][0]), str(e["catalog"][1])) for e in doc["sets"]})
    for entry in doc["sets"]:
        shutil.rmtree(work / str(entry["id"]), ignore_errors=True)
    commit.unlink()
    store.fsync_dir(work)


def _rows(pieces: dict[str, list[Any]]) -> dict[str, tuple[int, str]]:
    return {pid: (int(v[0]), str(v[1])) for pid, v in pieces.items()}


def _finish_commits(manager: BackupManager, report: ReencryptReport) -> None:
    """Rolls forward every tree a killed run committed but did not finish switching."""
    work = _work(manager.repo.root)
    for commit in sorted(work.glob(f"*{COMMIT_SUFFIX}")) if work.is_dir() else []:
        try:
            doc = json.loads(commit.read_bytes())
            ids = [str(e["id"]) for e in doc["sets"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EncryptionError(f"{commit}: not a readable re-encryption commit ({exc})") from None
        try:
            with manager.readers.switching(manager.repo.root, ids):
                _switch(manager, commit, doc)
        except SetBusy as exc:
            report.postponed[ids[0]] = str(exc)
            continue
        log.info("finished switching the re-encrypted chain of %s", ids[0])
        report.reencrypted.extend(ids)


__all__ = [
    "ReencryptReport",
    "SetRekey",
    "chain_trees",
    "each_stale_tree",
    "failure_message",
    "opening_keys",
    "parent_map_sum",
    "pending",
    "reencrypt",
    "refuse_unfinished",
    "set_generations",
    "switched",
    "write_sealed_manifest",
]
