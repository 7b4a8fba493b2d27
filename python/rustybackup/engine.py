"""BackupManager: registers databases, runs FULL / INCREMENTAL / DIFFERENTIAL /
ARCHIVE_LOG backups through the Rust engine, and restores to a point in time."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from . import _core, store
from .catalog import BackupCatalog, BackupSet, DatabaseEntry, set_from_manifest, to_us
from .enums import BackupType, ChecksumAlgorithm, SetStatus
from .errors import BackupCancelled, BackupError, CatalogError, ConfigError, NoRecoveryPath
from .restore import label, restore_set_files
from .retention import RetentionPolicy
from .sources import archive_candidates, snapshot_sqlite, walk

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ZSTD_LEVEL = 3


class CancelFlag(Protocol):
    """Anything with ``is_set()``, such as ``threading.Event``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class BackupProgress:
    """Sent to a ``progress`` callback every few MiB."""

    database: str
    set_id: str
    bytes_done: int
    bytes_total: int
    bytes_written: int
    files_done: int
    files_total: int


ProgressCallback = Callable[[BackupProgress], object]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BackupManager:
    """Opens or creates a repository and performs backups and restores in it."""

    def __init__(
        self,
        repository: str | os.PathLike[str],
        clock: Callable[[], datetime] | None = None,
        *,
        max_backup_sets: int = 50_000,
    ) -> None:
        self.repo = store.Repository(repository)
        self.repository = self.repo.root
        self.clock = clock or _utcnow
        fresh = not self.repo.catalog_path.exists()
        self.catalog = BackupCatalog(self.repo.catalog_path, max_backup_sets=max_backup_sets, clock=self._now)
        if fresh and any(True for _ in self.repo.manifests()):
            # Never let a sweep mistake every set for an orphan (docs/FORMAT.md).
            log.warning("catalog.db is missing; rebuilding it from the set manifests")
            self.catalog.rebuild()

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ConfigError("the clock must return timezone-aware datetimes")
        return now

    # --- databases -------------------------------------------------------------------

    def register_database(
        self,
        name: str,
        path: str | os.PathLike[str],
        kind: str = "files",
        archive_dir: str | os.PathLike[str] | None = None,
        block_size: int = 8192,
        algorithm: str = "blake3",
        compression: str | None = None,
    ) -> DatabaseEntry:
        """Registers (or updates) a backup source. A changed block size or algorithm
        makes the next INCREMENTAL/DIFFERENTIAL a FULL."""
        if not _NAME.match(name):
            raise ConfigError(
                f"database name {name!r} is invalid: use 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
            )
        if kind not in ("files", "sqlite"):
            raise ConfigError(f"database {name!r}: kind {kind!r} is invalid (valid: files, sqlite)")
        if not isinstance(block_size, int) or not 512 <= block_size <= 16 << 20:
            raise ConfigError(f"database {name!r}: block_size {block_size!r} is out of range (512..16777216 bytes)")
        try:
            alg = ChecksumAlgorithm(str(algorithm).lower()).value
        except ValueError:
            valid = ", ".join(a.value for a in ChecksumAlgorithm)
            raise ConfigError(f"database {name!r}: unknown algorithm {algorithm!r} (valid: {valid})") from None
        if compression not in (None, "zstd"):
            raise ConfigError(f"database {name!r}: compression {compression!r} is invalid (valid: zstd or None)")
        entry = DatabaseEntry(
            name=name,
            path=str(Path(path).absolute()),
            kind=kind,
            archive_dir=None if archive_dir is None else str(Path(archive_dir).absolute()),
            block_size=block_size,
            algorithm=alg,
            compression=compression,
            registered_at=self._now(),
        )
        self.catalog.put_database(entry)
        return entry

    def databases(self) -> list[DatabaseEntry]:
        return self.catalog.list_databases()

    # --- backup ----------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Removes what interrupted work left (staging, trash, unregistered set
        directories). Runs before every backup. Returns the paths removed."""
        return self.repo.sweep(self.catalog.set_ids(), busy=_is_locked)

    def backup(
        self,
        database: str,
        backup_type: BackupType | str,
        tags: Iterable[str] = (),
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> BackupSet:
        """Takes one backup and registers it once it is durable. Raises BackupCancelled
        (nothing registered, nothing left behind) when `cancel.is_set()` turns true."""
        db = self.catalog.get_database(database)
        try:
            btype = BackupType(str(backup_type).lower())
        except ValueError:
            valid = ", ".join(t.value for t in BackupType)
            raise ConfigError(f"unknown backup type {backup_type!r} (valid: {valid})") from None
        tags = tuple(str(t) for t in tags)
        self.cleanup()
        started = self._now()
        set_id = f"{started.astimezone(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"
        staging = self.repo.staging_dir(set_id)
        staging.mkdir()
        lock = _hold_lock(staging)
        try:
            if cancel is not None and cancel.is_set():
                raise BackupCancelled(f"backup of {database!r} cancelled before it started")
            if btype is BackupType.ARCHIVE_LOG:
                result = self._backup_archive(db, set_id, started, tags, progress, cancel)
            else:
                result = self._backup_data(db, btype, set_id, started, tags, progress, cancel)
            self.repo.publish(set_id)
            self.catalog.register_set(*result)
            os.unlink(self.repo.set_dir(set_id) / _LOCK)
        except BaseException as exc:
            # Nothing half-written stays: the staging dir (or the published but
            # unregistered set) is removed while we still hold its lock.
            for d in (staging, self.repo.set_dir(set_id)):
                if d.exists() and set_id not in self.catalog.set_ids():
                    shutil.rmtree(d, ignore_errors=True)
            if isinstance(exc, BackupCancelled):
                log.info("backup %s of %s cancelled", set_id, database)
                raise
            if isinstance(exc, BackupError | CatalogError | ConfigError):
                raise
            if isinstance(exc, OSError):
                where = f": {exc.filename}" if exc.filename else ""
                raise BackupError(
                    f"backup of {database!r} failed ({exc.strerror or exc}{where}); nothing was registered"
                ) from exc
            raise
        finally:
            os.close(lock)
        backup_set = result[0]
        log.info(
            "backup %s of %s done: %s, %d bytes read, %d stored",
            set_id,
            database,
            backup_set.backup_type.value,
            backup_set.bytes_read,
            backup_set.size,
        )
        return backup_set

    def _base_for(self, db: DatabaseEntry, btype: BackupType) -> BackupSet | None:
        """The parent of an INCREMENTAL (newest restorable state) or DIFFERENTIAL (its
        FULL); None means the backup is promoted to FULL."""
        if btype is BackupType.FULL:
            return None
        try:
            path = [s for s in self.catalog.find_recovery_path(db.name) if s.backup_type is not BackupType.ARCHIVE_LOG]
        except CatalogError:
            path = []
        if not path:
            log.warning("no usable FULL backup of %s yet: %s promoted to FULL", db.name, btype.value.upper())
            return None
        base = path[0] if btype is BackupType.DIFFERENTIAL else path[-1]
        if base.block_size != db.block_size or base.algorithm != db.algorithm:
            log.warning(
                "%s: block size or algorithm changed since set %s; %s promoted to FULL",
                db.name,
                base.id,
                btype.value.upper(),
            )
            return None
        return base

    def _backup_data(
        self,
        db: DatabaseEntry,
        btype: BackupType,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        progress: ProgressCallback | None,
        cancel: CancelFlag | None,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        staging = self.repo.staging_dir(set_id)
        source = Path(db.path)
        if not source.exists():
            raise BackupError(f"source of database {db.name!r} does not exist: {source}")
        if db.kind == "sqlite":
            snap = staging / f".snapshot-{source.name}"
            snapshot_sqlite(source, snap)
            tree = walk(snap)
            rel, path, st = tree.files[0]
            tree.files[0] = (source.name, path, st)
            is_dir = False
        else:
            tree = walk(source)
            is_dir = source.is_dir()
        parent = self._base_for(db, btype)
        if parent is None:
            btype = BackupType.FULL
        parent_manifest = self._manifest(parent) if parent else None
        parent_ranges: dict[str, tuple[int, int]] = {}
        sources: list[dict[str, str]] = []
        if parent_manifest is not None:
            parent_ranges = {f["path"]: (f["first_block"], f["block_count"]) for f in parent_manifest["files"]}
            sources = list(parent_manifest["sources"])
        sources.append({"set_id": set_id, "piece": store.PIECE})
        jobs = [(path, label(rel), parent_ranges.get(rel)) for rel, path, _ in tree.files]
        total = sum(st.st_size for _, _, st in tree.files)
        files_out, piece, bm_checksum, bm_records, bytes_read, blocks_stored = _core.backup_files(
            jobs,
            staging / store.PIECE,
            staging / store.BLOCKMAP,
            None if parent is None else self.repository / parent.blockmap,
            algorithm=db.algorithm,
            block_size=db.block_size,
            zstd_level=ZSTD_LEVEL if db.compression == "zstd" else None,
            self_source=len(sources) - 1,
            progress=_progress_adapter(progress, db.name, set_id, total, len(jobs)),
            cancel=cancel,
        )
        files = _file_entries(tree.files, files_out)
        if db.kind == "sqlite":
            st = source.stat()
            files[0]["mode"] = stat.S_IMODE(st.st_mode)
            os.unlink(staging / f".snapshot-{source.name}")
        dirs = [{"path": r, "mode": stat.S_IMODE(s.st_mode), "mtime_ns": s.st_mtime_ns} for r, s in tree.dirs]
        links = [{"path": r, "target": t, "mtime_ns": s.st_mtime_ns} for r, t, s in tree.symlinks]
        return self._finish_set(
            db, btype, set_id, started, tags, parent, piece, bm_checksum, bm_records, bytes_read, sources,
            files, dirs, links, source_kind=db.kind, is_dir=is_dir,
        )

    def _backup_archive(
        self,
        db: DatabaseEntry,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        progress: ProgressCallback | None,
        cancel: CancelFlag | None,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        if db.archive_dir is None:
            raise ConfigError(f"database {db.name!r} has no archive_dir; register it with archive_dir= for ARCHIVE_LOG")
        new: list[tuple[str, Path, os.stat_result]] = []
        for name, path in archive_candidates(Path(db.archive_dir)):
            known = self.catalog.archive_file(db.name, name)
            if known is None:
                new.append((name, path, path.stat()))
                continue
            # Read, never mapped: the archiver may still be writing the directory.
            digest = _core.hash_file(path, db.algorithm, mmap=False)
            if digest != known[0]:
                # pgBackRest's archive-push refuses a WAL segment that differs from the one
                # already archived under the same name: one of them is wrong.
                raise BackupError(
                    f"archive file {name!r} in {db.archive_dir} differs from the copy already backed up in set "
                    f"{known[1]} (digest {digest} != {known[0]}); refusing to overwrite an archived log"
                )
        jobs = [(path, label(name), None) for name, path, _ in new]
        total = sum(st.st_size for _, _, st in new)
        staging = self.repo.staging_dir(set_id)
        files_out, piece, bm_checksum, bm_records, bytes_read, _ = _core.backup_files(
            jobs,
            staging / store.PIECE,
            staging / store.BLOCKMAP,
            None,
            algorithm=db.algorithm,
            block_size=db.block_size,
            zstd_level=ZSTD_LEVEL if db.compression == "zstd" else None,
            self_source=0,
            progress=_progress_adapter(progress, db.name, set_id, total, len(jobs)),
            cancel=cancel,
        )
        files = _file_entries(new, files_out)
        if not files:
            log.info("archive log backup of %s: no new files in %s", db.name, db.archive_dir)
        sources = [{"set_id": set_id, "piece": store.PIECE}]
        return self._finish_set(
            db, BackupType.ARCHIVE_LOG, set_id, started, tags, None, piece, bm_checksum, bm_records, bytes_read,
            sources, files, [], [], source_kind="archive", is_dir=True,
        )

    def _finish_set(
        self,
        db: DatabaseEntry,
        btype: BackupType,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        parent: BackupSet | None,
        piece: _core.PieceInfo,
        bm_checksum: str,
        bm_records: int,
        bytes_read: int,
        sources: list[dict[str, str]],
        files: list[dict[str, Any]],
        dirs: list[dict[str, Any]],
        links: list[dict[str, Any]],
        *,
        source_kind: str,
        is_dir: bool,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        finished = self._now()
        staging = self.repo.staging_dir(set_id)
        rel_dir = f"{store.SETS_DIR}/{set_id}"
        bm_size = (staging / store.BLOCKMAP).stat().st_size
        manifest = {
            "format": 1,
            "set": {
                "id": set_id,
                "database": db.name,
                "backup_type": btype.value,
                "parent_id": None if parent is None else parent.id,
                "started_at_us": to_us(started),
                "finished_at_us": max(to_us(finished), to_us(started)),
                "block_size": db.block_size,
                "algorithm": db.algorithm,
                "compression": db.compression,
                "tags": list(tags),
                "size": piece.size + bm_size,
                "bytes_read": bytes_read,
                "source_kind": source_kind,
                "source_path": db.path,
                "source_is_dir": is_dir,
                "archive_dir": db.archive_dir,
            },
            "pieces": [
                {
                    "id": f"{set_id}/{store.PIECE}",
                    "path": f"{rel_dir}/{store.PIECE}",
                    "size": piece.size,
                    "checksum": piece.checksum,
                    "algorithm": piece.algorithm,
                    "block_count": piece.block_count,
                }
            ],
            "blockmap": {"path": f"{rel_dir}/{store.BLOCKMAP}", "checksum": bm_checksum, "block_count": bm_records},
            "sources": sources,
            "files": files,
            "dirs": dirs,
            "symlinks": links,
        }
        store.write_durable_json(staging / store.MANIFEST, manifest)
        return set_from_manifest(manifest)

    def _manifest(self, backup_set: BackupSet) -> dict[str, Any]:
        path = self.repository / backup_set.manifest
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackupError(f"manifest of set {backup_set.id} is unreadable ({path}): {exc}") from exc
        return data

    # --- restore ---------------------------------------------------------------------

    def restore(
        self,
        database: str,
        target_dir: str | os.PathLike[str],
        until: datetime | None = None,
        backup_set_id: str | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[BackupSet]:
        """Restores `database` as it was at `until` (default: the newest state), or as
        set `backup_set_id` holds it, into `target_dir` (absent or empty). Archive logs
        of the recovery path go to `target_dir/archive/`. `progress(bytes_restored)` is
        called every few MiB. Returns the sets used."""
        self.catalog.get_database(database)
        target = Path(target_dir)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise BackupError(f"restore target {target} must be absent or an empty directory")
        if backup_set_id is not None:
            chosen = self.catalog.get_set(backup_set_id)
            if chosen.database != database:
                raise CatalogError(f"backup set {backup_set_id} belongs to {chosen.database!r}, not {database!r}")
            if chosen.backup_type is BackupType.ARCHIVE_LOG:
                path = [chosen]
            else:
                path = self.catalog.chain(backup_set_id)
            bad = [s for s in path if s.status is not SetStatus.AVAILABLE]
            if bad:
                raise NoRecoveryPath(
                    f"set {backup_set_id} cannot be restored: its chain holds {bad[0].id} ({bad[0].status.value})"
                )
        else:
            path = self.catalog.find_recovery_path(database, until)
        target.mkdir(parents=True, exist_ok=True)
        data_sets = [s for s in path if s.backup_type is not BackupType.ARCHIVE_LOG]
        log_sets = [s for s in path if s.backup_type is BackupType.ARCHIVE_LOG]
        with self.reading([s.id for s in path]):
            if data_sets:
                last = data_sets[-1]
                restore_set_files(self.repository, last.id, self._manifest(last), target, progress, archive=False)
            if log_sets:
                archive = target / "archive"
                archive.mkdir(exist_ok=True)
                for s in log_sets:
                    restore_set_files(self.repository, s.id, self._manifest(s), archive, progress, archive=True)
        return path

    @contextmanager
    def reading(self, set_ids: Iterable[str]) -> Iterator[None]:
        """Holds shared locks on sets while they are read (restore, verification), so
        `delete` (and retention through it) refuses to remove them meanwhile, in this
        or any other process."""
        fds: list[int] = []
        try:
            for sid in set_ids:
                fd = os.open(self.repo.set_dir(sid) / _READERS, os.O_CREAT | os.O_RDWR, 0o600)
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            for fd in fds:
                os.close(fd)

    # --- delete ----------------------------------------------------------------------

    def delete(self, set_id: str) -> None:
        """Deletes one set: catalog rows first, then files (a crash leaves garbage for
        the sweep, never a dangling reference). A set others depend on is refused."""
        self.catalog.get_set(set_id)
        dependants = self.catalog.children(set_id)
        if dependants:
            raise CatalogError(
                f"backup set {set_id} is the parent of {', '.join(dependants)}; delete those first "
                "(or use a retention policy, which keeps chains whole)"
            )
        fd = os.open(self.repo.set_dir(set_id) / _READERS, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CatalogError(
                    f"backup set {set_id} is being read (a restore or verification holds it); try again later"
                ) from None
            self.catalog.remove_set(set_id)
            self.repo.discard(set_id)
        finally:
            os.close(fd)

    # --- retention -------------------------------------------------------------------

    def being_read(self, database: str) -> list[str]:
        """Ids of `database`'s sets that a restore or verification holds right now (in
        this or another process); retention keeps them."""
        busy = []
        for set_id, *_ in self.catalog.retention_rows(database):
            path = self.repo.set_dir(set_id) / _READERS
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(set_id)
            finally:
                os.close(fd)
        return busy

    def apply_retention(
        self, database: str, policy: RetentionPolicy, dry_run: bool = True, *, tz: str = "UTC", force: bool = False
    ) -> list[str]:
        """Deletes (or with `dry_run`, only names) the sets `policy` does not keep.

        Newest first, each one catalog row before files (`delete`), so a crash leaves
        files for `cleanup()`, never a catalog entry without its data. A set that a
        reader grabs between planning and deleting is kept (logged), never deleted
        under it. Applying the same policy twice deletes nothing more.
        """
        doomed = self.catalog.obsolete(database, policy, tz=tz, protected=self.being_read(database), force=force)
        if dry_run:
            return doomed
        deleted = []
        for set_id in doomed:
            try:
                self.delete(set_id)
            except CatalogError as exc:
                log.warning("retention kept %s: %s", set_id, exc)
                continue
            deleted.append(set_id)
        return deleted


def _file_entries(
    sources: Sequence[tuple[str, Path, os.stat_result]], scanned: Sequence[tuple[int, str, int, int]]
) -> list[dict[str, Any]]:
    """Manifest entries of regular files (docs/FORMAT.md): the stat taken before the
    scan, and what the Rust pass measured (size, whole-file digest, block range)."""
    return [
        {
            "path": rel,
            "mode": stat.S_IMODE(st.st_mode),
            "mtime_ns": st.st_mtime_ns,
            "size": size,
            "digest": digest,
            "first_block": first,
            "block_count": count,
        }
        for (rel, _, st), (size, digest, first, count) in zip(sources, scanned, strict=True)
    ]


_LOCK = ".lock"
_READERS = ".readers"
_YOUNG_SECONDS = 60.0


def _hold_lock(directory: Path) -> int:
    """Creates and flocks `directory/.lock`; the sweep skips locked directories, so a
    concurrent cleanup() never removes a backup that is still being written.

    The lock is taken under a temporary name and renamed into place, so `.lock` never
    exists unlocked while its backup lives: a sweep that found it between creation and
    flock would take the directory for a crash leftover and delete it. Before the
    rename the directory has no `.lock`, and the sweep's young-directory rule covers it.
    """
    pending = directory / (_LOCK + ".new")
    fd = os.open(pending, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(pending, directory / _LOCK)
    return fd


def _is_locked(directory: Path) -> bool:
    lock = directory / _LOCK
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        # No lock file yet: a backup may have just created the directory and not yet
        # its lock; leave very young directories alone.
        try:
            return time.time() - directory.stat().st_mtime < _YOUNG_SECONDS
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _progress_adapter(
    progress: ProgressCallback | None, database: str, set_id: str, total: int, files_total: int
) -> Callable[[int, int, int], object] | None:
    if progress is None:
        return None
    cb = progress

    def report(done: int, written: int, files_done: int) -> None:
        cb(BackupProgress(database, set_id, done, max(total, done), written, files_done, files_total))

    return report


__all__ = ["BackupManager", "BackupProgress", "CancelFlag"]
