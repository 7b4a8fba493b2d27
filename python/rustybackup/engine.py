"""BackupManager: registers databases, runs FULL / INCREMENTAL / DIFFERENTIAL /
ARCHIVE_LOG backups through the Rust engine, and restores to a point in time."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import (
    _core,
    dedup,
    fsmeta,
    gcpause,
    keys,
    locks,
    manifest,
    ratelimit,
    repo_url,
    resume,
    resume_upload,
    store,
)
from . import mirrors as mirrors_mod
from .catalog import (
    BackupCatalog,
    BackupSet,
    DatabaseEntry,
    RebuildReport,
    rebuild_lost_catalog,
    set_from_manifest,
    to_us,
)
from .enums import BackupType, ChecksumAlgorithm, SetStatus
from .errors import BackupCancelled, BackupError, CatalogError, ConfigError, NoRecoveryPath
from .manifest import (
    DirEntry,
    FileEntry,
    HardlinkEntry,
    Manifest,
    Source,
    SpecialEntry,
    Summary,
    SymlinkEntry,
)
from .selection import Selection
from .sources import LStat, SkippedEntry, TreeEntries, archive_candidates, label, walk
from .timestamps import from_us

if TYPE_CHECKING:
    # capture.py and sqlite_pitr.py (SQLite only) are imported where used: a file tree's
    # backup through the CLI does not pay their ~18 ms of imports. So are restore.py
    # (with restore_batch and restore_target), retention.py and sqlite_wal.py: a backup
    # of a file tree uses none of them, and their dataclasses cost ~1 ms each to create
    # at every start (dataclasses generates their methods with exec; bytecode does not
    # keep them).
    from .capture import CaptureStep, WalGuard
    from .postgres.basebackup import PageCheck
    from .remote_repo import RemoteRepository
    from .restore import RestoreOptions, RestoreResult
    from .retention import RetentionDecision, RetentionPolicy
    from .sqlite_wal import WalRecord
    from .upload_limits import UploadSchedule

log = logging.getLogger(__name__)

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
    return datetime.now(UTC)


class BackupManager:
    """Opens or creates a repository and performs backups and restores in it."""

    def __init__(
        self,
        repository: str | os.PathLike[str],
        clock: Callable[[], datetime] | None = None,
        *,
        max_backup_sets: int = 50_000,
        catalog: str | None = None,
        create: bool = True,
        create_bucket: bool = False,
    ) -> None:
        # `s3://bucket/prefix`: the engine works in the repository's local cache, and
        # remote_repo.py moves sets between it and the bucket.
        self.remote: RemoteRepository | None = None
        if repo_url.is_url(repository):
            from .remote_repo import RemoteRepository

            url = repo_url.parse_url(os.fspath(repository))
            self.remote = RemoteRepository(url, create=create, create_bucket=create_bucket)
            repository = self.remote.cache
        self.repo = store.Repository(repository)
        # Upload bandwidth by time of day, for this repository and its mirrors.
        self.upload_limits: UploadSchedule | None = None
        self.repository = self.repo.root
        self.clock = clock or _utcnow
        # SQLite WAL capture: a foreground capturer's guard per database, and the steps
        # whose read transaction lasts until their set is registered (capture.py).
        self.wal_guards: dict[str, WalGuard] = {}
        self._wal_steps: dict[str, CaptureStep] = {}
        # The summaries of the sets this manager wrote, so showing one after a backup
        # does not parse a manifest of every file of the tree again.
        self._summaries: dict[str, Summary] = {}
        # Resumable file-tree backups (resume.py): checkpoint commits every this many source
        # bytes (None: no checkpoints, a cut backup is discarded); what each set resumed.
        self.checkpoint_every: int | None = resume.CHECKPOINT_EVERY
        self.resumed: dict[str, resume.Resumed] = {}
        self.readers = locks.ReaderLocks(self.repository)
        # A lost catalog is rebuilt before anything reads it (docs/FORMAT.md), by one
        # process at a time; `last_rebuild` tells what that rebuild skipped.
        self.last_rebuild: RebuildReport | None = None
        # `catalog`: a PostgreSQL URL puts this repository's rows in a shared catalog
        # (catalog_pg.py); no catalog.db is read, written or rebuilt then.
        self.catalog_url = catalog
        with locks.catalog_rebuild_lock(self.repository):
            if catalog is None:
                self.last_rebuild = rebuild_lost_catalog(self.repo)
            self.catalog = BackupCatalog(
                self.repo.catalog_path, max_backup_sets=max_backup_sets, clock=self._now, url=catalog
            )
            if self.last_rebuild is None and not self.catalog.has_sets() and any(True for _ in self.repo.manifests()):
                # An empty catalog beside set manifests (v1 left one after a rebuild
                # that never committed): fill it, in one transaction.
                log.warning("catalog.db lists no sets but sets/ holds manifests; rebuilding it from them")
                self.last_rebuild = self.catalog.rebuild_report()
            if self.remote is not None:
                self.remote.sync(self.repo, self.catalog)

    def close(self) -> None:
        """Closes the catalog's connection (SQLite checkpoints its WAL into catalog.db
        then). The manager is in a reference cycle (the catalog's clock is its bound
        method), so without this the connection lives until the next cyclic collection,
        or to the interpreter's exit. Closing twice is harmless."""
        self.catalog.close()

    def __enter__(self) -> BackupManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        dsn: str | None = None,
        mirrors: Sequence[str | os.PathLike[str]] | None = None,
        *,
        exclude: Sequence[str] = (),
        exclude_files: Sequence[str | os.PathLike[str]] = (),
        exclude_caches: bool = False,
        one_file_system: bool = False,
    ) -> DatabaseEntry:
        """Registers (or updates) a backup source. A changed block size or algorithm
        makes the next INCREMENTAL/DIFFERENTIAL a FULL. A ``postgresql`` source is the
        data directory `path` of the server `dsn` (a libpq conninfo) reaches; its WAL
        arrives through ``archive-push``, so `archive_dir` is the repository's spool."""
        if not isinstance(name, str) or manifest.DATABASE_NAME.fullmatch(name) is None:
            raise ConfigError(
                f"database name {name!r} is invalid: use 1-64 letters, digits, '_', '.' or '-', starting alphanumeric"
            )
        if kind not in ("files", "sqlite", "postgresql"):
            raise ConfigError(f"database {name!r}: kind {kind!r} is invalid (valid: files, sqlite, postgresql)")
        if kind == "postgresql":
            if not dsn:
                raise ConfigError(f"database {name!r}: a postgresql database needs dsn= (a libpq conninfo)")
            if archive_dir is not None:
                raise ConfigError(f"database {name!r}: postgresql WAL arrives by archive-push, not archive_dir")
            from .postgres.archive import spool_dir

            archive_dir = spool_dir(self.repository, name)
        elif dsn is not None:
            raise ConfigError(f"database {name!r}: dsn= is for postgresql databases")
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
            dsn=dsn,
            selection=self._selection(name, kind, exclude, exclude_files, exclude_caches, one_file_system),
        )
        if mirrors is not None:
            # Checked (and stored) first: a bad mirror leaves the registration as it was.
            here = str(self.remote.url) if self.remote is not None else str(self.repository)
            mirrors_mod.set_mirrors(self.catalog, name, [os.fspath(m) for m in mirrors], here)
        self.catalog.put_database(entry)
        return entry

    @staticmethod
    def _selection(
        name: str,
        kind: str,
        exclude: Sequence[str],
        exclude_files: Sequence[str | os.PathLike[str]],
        exclude_caches: bool,
        one_file_system: bool,
    ) -> Selection:
        """A file tree's selection rules, checked now (a bad pattern fails the
        registration, not a backup at night)."""
        sel = Selection.build(
            exclude=list(exclude),
            exclude_files=[os.fspath(f) for f in exclude_files],
            exclude_caches=exclude_caches,
            one_file_system=one_file_system,
            where=f"database {name!r}",
        )
        if not sel.empty and kind != "files":
            raise ConfigError(f"database {name!r}: selection rules are for file trees, not {kind}")
        sel.matcher()
        return sel

    def databases(self) -> list[DatabaseEntry]:
        return self.catalog.list_databases()

    # --- backup ----------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Removes what interrupted work left (staging, trash, unregistered set
        directories). Runs before every backup. Returns the paths removed."""
        known, dead = self.catalog.set_ids(), self.catalog.tombstones()
        now = self._now()
        removed = self.repo.sweep(
            known,
            busy=locks.is_staging_locked,
            tombstones=dead,
            # A finished set whose upload failed stays for its next run (resume_upload.py).
            resumable=lambda d: resume.keep_for_resume(d, now) or resume_upload.pending(d) is not None,
        )
        if self.remote is not None:
            removed += self.remote.cleanup(dead)
        return removed

    def backup(
        self,
        database: str,
        backup_type: BackupType | str,
        tags: Iterable[str] = (),
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        io_limit: float | None = None,
        *,
        force_read: bool = False,
        selection: Selection | None = None,
    ) -> BackupSet:
        """Takes one backup and registers it once it is durable. Raises BackupCancelled
        (nothing registered) when `cancel.is_set()` turns true; a file tree's finished
        files then stay staged, and the next backup of the same job resumes (resume.py).
        `io_limit` caps the source reads in bytes per second (``ratelimit.paced``).
        A file tree's files unchanged since the parent (size, mtime, ctime, inode and
        device) are not read again unless `force_read`; `selection` adds rules to the
        database's own (a job's)."""
        db = self.catalog.get_database(database)
        if selection is not None:
            if db.kind != "files" and not selection.empty:
                raise ConfigError(f"database {database!r}: selection rules are for file trees, not {db.kind}")
            db = replace(db, selection=db.selection.merged(selection))
        if io_limit is not None:
            progress = ratelimit.paced(progress, ratelimit.TokenBucket(io_limit), cancel)
        try:
            btype = BackupType(str(backup_type).lower())
        except ValueError:
            valid = ", ".join(t.value for t in BackupType)
            raise ConfigError(f"unknown backup type {backup_type!r} (valid: {valid})") from None
        tags = tuple(str(t) for t in tags)
        self.cleanup()
        if self.remote is not None and btype is not BackupType.ARCHIVE_LOG:
            # A finished set of this database whose upload was cut goes first (its child may build on it).
            resume_upload.finish(self, db.name)
        started = self._now()
        # os.urandom is what secrets.token_hex draws from; `secrets` would load hashlib
        # and OpenSSL at every backup command's start (issue 17, keys.py).
        set_id = f"{started.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{os.urandom(4).hex()}"
        # The parent, decided once: the cut run this one resumes was keyed on it, and the
        # pass builds on it (for PostgreSQL the search plans a recovery: tens of ms).
        parent = None if btype is BackupType.ARCHIVE_LOG else self._base_for(db, btype)
        # A cut backup of the same job goes on in its own directory, under its own id.
        claimed = self._claim_cut(db, btype, parent)
        if claimed is not None:
            set_id, started, lock = claimed.set_id, from_us(claimed.started_at_us), claimed.lock
        staging = self.repo.staging_dir(set_id)
        if claimed is None:
            with locks.creating_staging(self.repo.root):
                staging.mkdir()
                lock = locks.hold_staging_lock(staging)
        registered = False
        uploading = False
        tail: _core.TailUpload | None = None
        shared = ExitStack()
        # No cyclic collections during the backup: at many small files they were a third
        # of its CPU (gcpause.py); closed with `shared`, in the finally below.
        shared.enter_context(gcpause.paused())
        try:
            if self.remote is not None:
                # A lock object: no host deletes a parent this backup builds on meanwhile.
                shared.enter_context(self.remote.locked("shared"))
                # The piece goes up while it is written (remote_repo.tail): a fresh file
                # backup's only (a resumed one's piece is cut back first; paced uploads
                # run inside the window's pacer, in commit).
                if claimed is None and db.kind == "files" and btype is not BackupType.ARCHIVE_LOG:
                    if self.upload_limits is None:
                        tail = self.remote.tail(staging, set_id)
                        shared.callback(tail.cancel)
            if cancel is not None and cancel.is_set():
                raise BackupCancelled(f"backup of {database!r} cancelled before it started")
            if btype is BackupType.ARCHIVE_LOG:
                result = self._backup_archive(db, set_id, started, tags, progress, cancel)
            elif db.kind == "postgresql":
                from .postgres import archive_wait, basebackup

                final = basebackup.take(
                    db,
                    staging,
                    set_id,
                    self._now,
                    lambda pages: self._backup_data(
                        db, btype, parent, set_id, started, tags, progress, cancel, force_read, pages=pages
                    ),
                    # The WAL wait checks this repository (a remote one: the server's wait).
                    archived=None if self.remote is not None else lambda n: archive_wait.is_archived(self, db.name, n),
                )
                result = set_from_manifest(final)
            else:
                result = self._backup_data(db, btype, parent, set_id, started, tags, progress, cancel, force_read)
            if self.remote is not None:
                uploading = True
                self.remote.commit(staging, result[0], self.upload_limits, tail)
                uploading = False
            self.repo.publish(set_id)
            self.catalog.register_set(*result)
            registered = True
            locks.drop_staging_lock_file(self.repo.set_dir(set_id))
        except BaseException as exc:
            # Nothing half-written stays: the staging dir (or the published but
            # unregistered set) is removed while we still hold its lock.
            kept: str | None = None
            for d in (staging, self.repo.set_dir(set_id)):
                if d.exists() and set_id not in self.catalog.set_ids():
                    # ... except a cut pass's finished files, which its next run resumes.
                    if d == staging and (kept := resume.keep_cut(staging, database, exc)) is not None:
                        continue
                    # ... and a finished set whose upload failed (not one a WAL capture step
                    # still has to settle), which the next backup uploads (resume_upload.py).
                    if (
                        d == staging
                        and uploading
                        and set_id not in self._wal_steps
                        and not isinstance(exc, BackupCancelled | KeyboardInterrupt)
                    ):
                        kept = resume_upload.keep(staging, database, set_id, exc)
                        continue
                    shutil.rmtree(d, ignore_errors=True)
            if isinstance(exc, BackupCancelled):
                log.info("backup %s of %s cancelled", set_id, database)
                if kept is not None:
                    raise BackupCancelled(f"{exc}; {kept}") from exc
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
            shared.close()
            step = self._wal_steps.pop(set_id, None)
            if step is not None:
                step.finish(set_id if registered else None)
        backup_set = result[0]
        log.info(
            "backup %s of %s done: %s, %d bytes read, %d stored",
            set_id,
            database,
            backup_set.backup_type.value,
            backup_set.bytes_read,
            backup_set.size,
        )
        # Read once, written to several: the mirrors get the set from here (mirrors.py);
        # a mirror's failure is recorded, never this backup's.
        mirrors_mod.replicate(self, backup_set)
        if self.remote is not None:
            self.remote.trim(self.repo, set_id)
        return backup_set

    def _claim_cut(self, db: DatabaseEntry, btype: BackupType, base: BackupSet | None) -> resume.Claim | None:
        """The staging directory of a cut backup this one (on `base`) resumes (resume.py), locked."""
        if not self._resumable(db) or btype is BackupType.ARCHIVE_LOG:
            return None
        key = resume.ResumeKey.of(db, btype if base is not None else BackupType.FULL, base)
        # An encrypted set's staged blocks are sealed with its set key, kept in staging.
        needs = (keys.SET_KEY_FILE,) if keys.is_encrypted(self.repository) else ()
        return resume.claim(self.repository, key, self.catalog.set_ids(), self._now(), needs=needs)

    def _resumable(self, db: DatabaseEntry) -> bool:
        """Whether a backup of `db` journals its finished files for a later run: file
        trees and PostgreSQL base backups, unless checkpoints are off (a SQLite snapshot is
        one read transaction: README "Resumable backups")."""
        return db.kind in ("files", "postgresql") and self.checkpoint_every is not None

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
        parent: BackupSet | None,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        progress: ProgressCallback | None,
        cancel: CancelFlag | None,
        force_read: bool = False,
        *,
        pages: PageCheck | None = None,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        staging = self.repo.staging_dir(set_id)
        source = Path(db.path)
        if not source.exists():
            raise BackupError(f"source of database {db.name!r} does not exist: {source}")
        live = ExitStack()
        position: WalRecord | None = None
        captured: fsmeta.Captured | None = None
        # Its files keep their text: the new manifest's check compares, not reads, the
        # files that are the parent's byte for byte (manifest.write). Read before the
        # walk, which leaves the xattrs of its unchanged files unasked (dedup.known_files).
        parent_manifest = self._manifest(parent, keep_text=True) if parent else None
        if db.kind == "sqlite":
            from .capture import seal_path
            from .sqlite_wal import live_database

            # Read in place under a read transaction when possible (sqlite_wal.py).
            copy = live.enter_context(live_database(source, staging, seal_path(self.repository, db.name)))
            position = copy.position
            tree = TreeEntries(files=[(source.name, copy.path, copy.path.stat())])
            is_dir = False
        else:
            if db.kind == "postgresql":
                from .postgres.basebackup import data_tree

                tree = data_tree(source)
                if self._resumable(db):
                    # What a cut run left that can be adopted goes first (resume.py);
                    # before anything indexes the file list.
                    tree.files = resume.base_backup_order(tree.files, staging)
            else:
                known = None if parent_manifest is None or force_read else dedup.known_files(parent_manifest)
                tree = walk(source, db.selection, known)
                # Owners, xattrs, holes, hardlinks, special files (issue 17).
                captured = fsmeta.capture(source, tree)
            is_dir = source.is_dir()
        if parent is None:
            btype = BackupType.FULL
        if self.remote is not None and parent_manifest is not None:
            self.remote.fetch_chain(self.repo, parent_manifest, with_pieces=False)
        parent_ranges: list[tuple[int, int] | None] | None = None
        unchanged: list[dedup.Reuse] = []
        sources: list[Source] = []
        if parent_manifest is not None:
            # A file tree's parent rows are matched in Rust (dedup.match_parent).
            parent_ranges, unchanged = dedup.match_parent(
                tree.files, parent_manifest.files, reuse=db.kind == "files" and not force_read
            )
            if db.kind == "postgresql" and not force_read:
                from .postgres import unchanged as pg_unchanged

                taken = pg_unchanged.unchanged_since(
                    tree.files, parent_manifest.files, parent_manifest.record.started_at_us
                )
                unchanged = [dedup.reuse_of(i, e) for i, e in sorted(taken.items())]
            sources = list(parent_manifest.sources)
        sources.append(Source(set_id, store.PIECE))
        checkpoint = None
        # Resumable (resume.py): a cut pass leaves its finished files for the next run. A
        # pass that reads nothing (every file taken over) has nothing to leave: run again,
        # it takes them over again; it journals only when it goes on from a cut run.
        reads = len(unchanged) < len(tree.files) or (staging / resume.CHECKPOINT).exists()
        if self._resumable(db) and reads:
            resume.mark(staging, resume.ResumeKey.of(db, btype, parent), set_id, to_us(started))
            checkpoint = staging / resume.CHECKPOINT
        try:
            done = self._read(
                db,
                set_id,
                tree.files,
                parent_ranges,
                None if parent is None else self.repository / parent.blockmap,
                len(sources) - 1,
                progress,
                cancel,
                unchanged=unchanged,
                checkpoint=checkpoint,
                pages=pages,
            )
        finally:
            live.close()
        # A file tree's entries are written from Rust rows (dedup.tree_files): an
        # unchanged file never becomes a FileEntry.
        table = None if captured is None else dedup.tree_files(done.read, done.out[0], done.changed, captured)
        files: Sequence[FileEntry] = done.entries() if table is None else table
        if db.kind == "sqlite":
            mode = stat.S_IMODE(source.stat().st_mode)
            files = [replace(f, mode=mode) for f in files]
            (staging / f".snapshot-{source.name}").unlink(missing_ok=True)
        dirs = [DirEntry(r, stat.S_IMODE(s.st_mode), s.st_mtime_ns) for r, s in tree.dirs]
        links = [SymlinkEntry(r, t, s.st_mtime_ns) for r, t, s in tree.symlinks]
        hardlinks: list[HardlinkEntry] = []
        if captured is not None:
            files = files if table is not None else captured.files(list(files))
            dirs, links = captured.dirs(dirs), captured.symlinks(links)
            hardlinks, lost = captured.links_to(files)
            tree.skipped.extend([*captured.problems, *lost])
        summary = Summary(
            skipped=tuple(sorted([*tree.skipped, *done.skipped], key=lambda e: e.path)),
            # A live PostgreSQL cluster changes its files under every base backup; replaying
            # the WAL from the start LSN repairs them, so that is not a warning there.
            changed=() if db.kind == "postgresql" else done.changed,
            excluded=tree.excluded,
            unread=done.unread,
        )
        return self._finish_set(
            db,
            btype,
            set_id,
            started,
            tags,
            parent,
            done,
            sources,
            files,
            dirs,
            links,
            summary,
            source_kind=db.kind,
            is_dir=is_dir,
            wal=position,
            hardlinks=hardlinks,
            specials=[] if captured is None else captured.specials,
            root=None if captured is None else captured.root,
            parent_files=None if parent_manifest is None else parent_manifest.files,
        )

    def _read(
        self,
        db: DatabaseEntry,
        set_id: str,
        entries: Sequence[tuple[str, str | Path, LStat]],
        parent_ranges: Sequence[tuple[int, int] | None] | None,
        parent_blockmap: Path | None,
        self_source: int,
        progress: ProgressCallback | None,
        cancel: CancelFlag | None,
        *,
        unchanged: Sequence[dedup.Reuse] = (),
        checkpoint: Path | None = None,
        pages: PageCheck | None = None,
    ) -> _Pass:
        """The one pass of the Rust engine over `entries`. `parent_ranges`: the parent's
        block range of each entry, by position (None: no parent); `unchanged`: the
        `dedup.Reuse` of the entries taken over from the parent, in order. A file that
        vanished since the walk, or that cannot be opened or read, is left out and listed,
        and the pass starts over without it (tar and restic warn and go on; a live tree
        loses such races). An error on any other path (the repository's own files) fails
        the backup."""
        staging = self.repo.staging_dir(set_id)
        todo = list(entries)
        ranges = [None] * len(todo) if parent_ranges is None else list(parent_ranges)
        skipped: list[SkippedEntry] = []
        # Positions in `todo`: they shift when a file is left out (below).
        reuse = list(unchanged)
        while True:
            jobs = [(path, label(rel), rng) for (rel, path, _), rng in zip(todo, ranges, strict=True)]
            # The bytes of the files to read, for the progress.
            total = sum(t[2].st_size for t in todo) - sum(todo[r[0]][2].st_size for r in reuse)
            try:
                out = _core.backup_files(
                    jobs,
                    staging / store.PIECE,
                    staging / store.BLOCKMAP,
                    parent_blockmap,
                    algorithm=db.algorithm,
                    block_size=db.block_size,
                    zstd_level=ZSTD_LEVEL if db.compression == "zstd" else None,
                    self_source=self_source,
                    progress=_progress_adapter(progress, db.name, set_id, total, len(jobs)),
                    cancel=cancel,
                    # An encrypted repository's blocks are sealed with this set's keys (keys.py).
                    seal_key=keys.new_set_block_keys(self.repository, set_id),
                    seal_cipher=keys.block_cipher(self.repository),
                    reuse=reuse,
                    # Identical blocks stored once across files and sets (rust/src/dedup/); a
                    # database keeps the positional comparison alone.
                    dedup=db.kind == "files",
                    checkpoint=checkpoint,
                    checkpoint_every=self.checkpoint_every or 0,
                    checkpoint_rule="postgresql" if db.kind == "postgresql" else "files",
                    # A base backup's page checks, on the bytes read (postgres/basebackup.py).
                    pg_pages=None if pages is None else pages.arguments(rel for rel, _, _ in todo),
                )
                if pages is not None:
                    pages.record([rel for rel, _, _ in todo], out[8], out[7][0], frozenset(r[0] for r in reuse))
                if checkpoint is not None:
                    adopted = resume.finished(staging, set_id, db.name, out[7])
                    if adopted is not None:
                        self.resumed[set_id] = adopted
            except OSError as exc:
                named = None if exc.filename is None else os.fsdecode(exc.filename)
                at = next((i for i, (_, path, _) in enumerate(todo) if str(path) == named), None)
                if at is None or db.kind == "sqlite":
                    # The repository's own files, or a database snapshot: nothing to skip.
                    raise
                rel = todo.pop(at)[0]
                ranges.pop(at)
                reuse = [(r[0] - (r[0] > at), *r[1:]) for r in reuse if r[0] != at]
                why = (
                    "vanished before it was read"
                    if isinstance(exc, FileNotFoundError)
                    else (f"cannot be read ({exc.strerror or exc})")
                )
                log.warning("backup %s of %s: skipping %s: %s", set_id, db.name, named, why)
                skipped.append(SkippedEntry(rel, why))
                if checkpoint is None:  # else the next pass adopts the files before it
                    _discard_partial(staging)
                continue
            return _Pass(todo, out, skipped, frozenset(r[0] for r in reuse))

    def _backup_archive(
        self,
        db: DatabaseEntry,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        progress: ProgressCallback | None,
        cancel: CancelFlag | None,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        if db.kind == "sqlite":
            return self._capture_wal(db, set_id, started, tags, progress, cancel)
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
        done = self._read(db, set_id, new, None, None, 0, progress, cancel)
        files = done.entries()
        if not files:
            log.info("archive log backup of %s: no new files in %s", db.name, db.archive_dir)
        return self._finish_set(
            db,
            BackupType.ARCHIVE_LOG,
            set_id,
            started,
            tags,
            None,
            done,
            [Source(set_id, store.PIECE)],
            files,
            [],
            [],
            Summary(tuple(done.skipped), done.changed),
            source_kind="archive",
            is_dir=True,
        )

    def _capture_wal(
        self,
        db: DatabaseEntry,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        progress: ProgressCallback | None,
        cancel: CancelFlag | None,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        """One SQLite WAL capture step (capture.py): its read transaction lasts until the
        set is registered, then it checkpoints (`backup`'s `finally`)."""
        from .capture import CaptureStep

        step = CaptureStep(self, db)
        self._wal_steps[set_id] = step
        entries, record = step.collect(self.repo.staging_dir(set_id))
        done = self._read(db, set_id, entries, None, None, 0, progress, cancel)
        step.discard_copy()
        return self._finish_set(
            db,
            BackupType.ARCHIVE_LOG,
            set_id,
            started,
            tags,
            None,
            done,
            [Source(set_id, store.PIECE)],
            done.entries(),
            [],
            [],
            Summary(tuple(done.skipped), done.changed),
            source_kind="archive",
            is_dir=True,
            wal=record,
        )

    def _finish_set(
        self,
        db: DatabaseEntry,
        btype: BackupType,
        set_id: str,
        started: datetime,
        tags: tuple[str, ...],
        parent: BackupSet | None,
        done: _Pass,
        sources: list[Source],
        files: Sequence[FileEntry],
        dirs: list[DirEntry],
        links: list[SymlinkEntry],
        summary: Summary,
        *,
        source_kind: str,
        is_dir: bool,
        wal: WalRecord | None = None,
        hardlinks: Sequence[HardlinkEntry] = (),
        specials: Sequence[SpecialEntry] = (),
        root: DirEntry | None = None,
        parent_files: Sequence[FileEntry] | None = None,
    ) -> tuple[BackupSet, list[tuple[str, str]]]:
        finished = self._now()
        staging = self.repo.staging_dir(set_id)
        rel_dir = f"{store.SETS_DIR}/{set_id}"
        piece = done.piece
        bm_size = (staging / store.BLOCKMAP).stat().st_size
        m = Manifest(
            record=manifest.SetRecord(
                id=set_id,
                database=db.name,
                backup_type=btype,
                parent_id=None if parent is None else parent.id,
                started_at_us=to_us(started),
                finished_at_us=max(to_us(finished), to_us(started)),
                block_size=db.block_size,
                algorithm=db.algorithm,
                compression=db.compression,
                tags=tags,
                size=piece.size + bm_size,
                bytes_read=done.bytes_read,
                source_kind=source_kind,
                source_path=db.path,
                source_is_dir=is_dir,
                archive_dir=db.archive_dir,
            ),
            pieces=(
                manifest.Piece(
                    id=f"{set_id}/{store.PIECE}",
                    path=f"{rel_dir}/{store.PIECE}",
                    size=piece.size,
                    checksum=piece.checksum,
                    algorithm=piece.algorithm,
                    block_count=piece.block_count,
                ),
            ),
            blockmap=manifest.BlockMap(f"{rel_dir}/{store.BLOCKMAP}", done.blockmap_checksum, done.blockmap_records),
            sources=tuple(sources),
            files=files if isinstance(files, manifest.FileTable) else tuple(files),
            dirs=tuple(dirs),
            symlinks=tuple(links),
            summary=summary,
            wal=wal,
            hardlinks=tuple(hardlinks),
            specials=tuple(specials),
            root=root,
        )
        manifest.write(staging / store.MANIFEST, m, known=parent_files)
        self._summaries[set_id] = summary
        return set_from_manifest(m)

    def _manifest(self, backup_set: BackupSet, *, keep_text: bool = False) -> Manifest:
        """The set's manifest, parsed and validated: CatalogError names the file and the
        field when it is damaged."""
        path = self.repo.set_dir(backup_set.id) / store.MANIFEST
        return manifest.load(path, set_id=backup_set.id, keep_text=keep_text)

    def _restorable(self, backup_set: BackupSet, *, pieces: bool = True) -> Manifest:
        """The manifest of a set about to be restored, once every piece its block map
        points into is known to the catalog: a set is refused before anything is written.
        On a remote repository the chain's block maps are fetched into the cache, and its
        pieces too unless `pieces` is false (a restore that reads them by ranges)."""
        m = self._manifest(backup_set)
        where = manifest.display_name(self.repo.set_dir(backup_set.id) / store.MANIFEST)
        for i, src in enumerate(m.sources[:-1]):
            try:
                owner = self.catalog.get_set(src.set_id)
            except CatalogError:
                raise CatalogError(
                    f"{where}: sources[{i}].set_id: set {src.set_id} is not in the catalog; "
                    f"set {backup_set.id} cannot be restored without it"
                ) from None
            if f"{store.SETS_DIR}/{src.set_id}/{src.piece}" not in {p.path for p in owner.pieces}:
                raise CatalogError(f"{where}: sources[{i}].piece: {src.piece!r} is not a piece of set {src.set_id}")
        if self.remote is not None:
            self.remote.fetch_chain(self.repo, m, with_pieces=pieces)
        return m

    def summary(self, set_id: str) -> Summary:
        """What set `set_id`'s backup skipped or saw change while reading (its manifest)."""
        known = self._summaries.get(set_id)
        return known if known is not None else self._manifest(self.catalog.get_set(set_id)).summary

    # --- restore ---------------------------------------------------------------------

    def restore(
        self,
        database: str,
        target_dir: str | os.PathLike[str],
        until: datetime | None = None,
        backup_set_id: str | None = None,
        progress: Callable[[int], object] | None = None,
        options: RestoreOptions | None = None,
    ) -> RestoreResult:
        """Restores `database` as it was at `until` (default: the newest state), or as
        set `backup_set_id` holds it, into `target_dir` (absent or empty, unless
        `options.delta`). Archive logs of the recovery path go to `target_dir/archive/`.
        `progress(bytes_restored)` is called every few MiB. Returns the sets used, with
        `.report` saying what was written and what could not be restored."""
        from .restore import RestoreResult, restore_set_files, streams_from

        db = self.catalog.get_database(database)
        if db.kind == "postgresql":
            from .postgres.recovery import restore as restore_postgresql

            return RestoreResult(restore_postgresql(self, db, Path(target_dir), until, set_id=backup_set_id))
        target = Path(target_dir)
        delta = options is not None and options.delta
        if target.exists() and (not target.is_dir() or (not delta and any(target.iterdir()))):
            raise BackupError(
                f"restore target {target} must be absent or an empty directory "
                "(--delta restores into an existing tree, keeping what already matches)"
            )
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
        result = RestoreResult(path)
        data_sets = [s for s in path if s.backup_type is not BackupType.ARCHIVE_LOG]
        log_sets = [s for s in path if s.backup_type is BackupType.ARCHIVE_LOG]
        with self.reading([s.id for s in path]):
            # Every manifest is read and checked before the first byte is written.
            last = data_sets[-1] if data_sets else None
            data_manifest = None if last is None else self._restorable(last, pieces=False)
            # From a bucket, a plain restore reads the pieces by ranges as it writes
            # (storage/restore.rs); the in-place one needs them in the cache.
            streamed = None
            if self.remote is not None and data_manifest is not None:
                if streams_from(data_manifest, options):
                    streamed = self.remote.store
                else:
                    self.remote.fetch_chain(self.repo, data_manifest, with_pieces=True)
            log_manifests = [(s, self._restorable(s)) for s in log_sets]
            wal_plan = None
            if db.kind == "sqlite" and last is not None and data_manifest is not None:
                # Captured WAL commits are replayed, not dropped into archive/ (sqlite_pitr.py).
                from . import sqlite_pitr
                from .sqlite_wal import WalCapture

                until_us = None if until is None or backup_set_id is not None else to_us(until)
                wal_plan = sqlite_pitr.plan(database, last, data_manifest, log_manifests, until_us)
                log_manifests = [(s, m) for s, m in log_manifests if not isinstance(m.wal, WalCapture)]
            if last is not None and data_manifest is not None:
                result.report.merge(
                    restore_set_files(
                        self.repository,
                        last.id,
                        data_manifest,
                        target,
                        progress,
                        archive=False,
                        options=options,
                        remote=streamed,
                    )
                )
                if wal_plan is not None and data_manifest.files:
                    sqlite_pitr.apply(self.repository, wal_plan, target / data_manifest.files[0].path)
            if log_manifests:
                # Created by restore_set_files without following a link named archive.
                archive = target / "archive"
                for s, m in log_manifests:
                    result.report.merge(restore_set_files(self.repository, s.id, m, archive, progress, archive=True))
        return result

    def restore_files(
        self,
        set_id: str,
        patterns: Sequence[str],
        target_dir: str | os.PathLike[str],
        *,
        delta: bool = False,
        delete: bool = False,
        numeric_owner: bool = False,
    ) -> RestoreResult:
        """Restores the entries of set `set_id` that `patterns` select (gitignore
        patterns: a matching directory brings its contents) into `target_dir`."""
        from .restore import RestoreOptions

        chosen = self.catalog.get_set(set_id)
        opts = RestoreOptions(tuple(patterns), delta=delta, delete=delete, numeric_owner=numeric_owner)
        return self.restore(chosen.database, target_dir, backup_set_id=set_id, options=opts)

    def set_manifest(self, set_id: str) -> Manifest:
        """Set `set_id`'s manifest, parsed and checked (what `ls`, `diff` and `dump` read)."""
        return self._restorable(self.catalog.get_set(set_id))

    @contextmanager
    def reading(self, set_ids: Iterable[str]) -> Iterator[None]:
        """Holds shared locks on sets while they are read (restore, verification), so
        `delete` (and retention through it) refuses to remove them meanwhile, in this
        or any other process (locks.py: one file per set under ``readers/``). On a
        remote repository also a shared lock object, against other hosts' retention."""
        from .restore import allow_open_files

        ids = [store.check_set_id(sid) for sid in set_ids]
        allow_open_files(3 * len(ids))  # per set: its reader's lock, block map and piece
        with ExitStack() as held:
            held.enter_context(self.readers.reading(ids))
            if self.remote is not None:
                held.enter_context(self.remote.reading(self.repo, ids))
            yield

    # --- delete ----------------------------------------------------------------------

    def delete(self, set_id: str) -> None:
        """Deletes one set: catalog rows first (leaving a tombstone), then files (a crash
        leaves garbage for the sweep, never a dangling reference). A set others depend
        on, or one being read, is refused."""
        self.catalog.get_set(set_id)
        dependants = self.catalog.children(set_id)
        if dependants:
            raise CatalogError(
                f"backup set {set_id} is the parent of {', '.join(dependants)}; delete those first "
                "(or use a retention policy, which keeps chains whole)"
            )
        with self.readers.deleting(set_id), ExitStack() as remote:
            if self.remote is not None:
                # Other hosts' readers and backups hold shared lock objects (remote_repo.py).
                remote.enter_context(self.remote.deleting())
            self.catalog.remove_set(set_id)
            if self.remote is not None:
                self.remote.delete_set(set_id)
            self.repo.discard(set_id)

    # --- retention -------------------------------------------------------------------

    def being_read(self, database: str) -> list[str]:
        """Ids of `database`'s sets that a restore or verification holds right now (in
        this or another process); retention keeps them. One listing of ``readers/``,
        whatever the number of sets."""
        held = self.readers.being_read(valid=manifest.is_set_id)
        return sorted(self.catalog.sets_of(database, held)) if held else []

    def retention_plan(
        self, database: str, policy: RetentionPolicy, *, tz: str = "UTC", force: bool = False
    ) -> list[RetentionDecision]:
        """The plan `apply_retention` carries out: the catalog's plan, with the sets
        being read right now kept ("protected")."""
        return self.catalog.retention_plan(database, policy, tz=tz, protected=self.being_read(database), force=force)

    def apply_retention(
        self,
        database: str,
        policy: RetentionPolicy,
        dry_run: bool = True,
        *,
        tz: str = "UTC",
        force: bool = False,
        plan: Sequence[RetentionDecision] | None = None,
    ) -> list[str]:
        """Deletes (or with `dry_run`, only names) the sets `policy` does not keep.

        `plan` is a `retention_plan` already shown to someone: exactly its deletions are
        carried out. Newest first, each one catalog row before files (`delete`), so a
        crash leaves files for `cleanup()`, never a catalog entry without its data. A set
        that a reader grabs between planning and deleting is kept (logged), never
        deleted under it. Applying the same policy twice deletes nothing more.
        """
        decisions = plan if plan is not None else self.retention_plan(database, policy, tz=tz, force=force)
        doomed = [d.set_id for d in reversed(decisions) if not d.keep]
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


@dataclass(frozen=True)
class _Pass:
    """What the Rust pass stored: the files it read (with the stat taken by the walk),
    its results, and the files it had to leave out."""

    read: list[tuple[str, str | Path, LStat]]
    out: tuple[
        list[tuple[int, str, int, int]],
        _core.PieceInfo,
        str,
        int,
        int,
        int,
        list[str],
        tuple[int, int, str | None],
        list[tuple[int, int, int, int]] | None,
    ]
    skipped: list[SkippedEntry]
    # Positions in `read` of the files taken over from the parent without reading them.
    reused: frozenset[int] = frozenset()

    @property
    def unread(self) -> int:
        return len(self.reused)

    @property
    def piece(self) -> _core.PieceInfo:
        return self.out[1]

    @property
    def blockmap_checksum(self) -> str:
        return self.out[2]

    @property
    def blockmap_records(self) -> int:
        return self.out[3]

    @property
    def bytes_read(self) -> int:
        return self.out[4]

    @property
    def changed(self) -> tuple[str, ...]:
        """The files that changed while they were read, by path (the pass names them by
        their printable label)."""
        if not self.out[6]:
            return ()  # the common case: no label to build for every file read
        by_label = {label(rel): rel for rel, _, _ in reversed(self.read)}
        return tuple(sorted(by_label.get(name, name) for name in self.out[6]))

    def entries(self) -> list[FileEntry]:
        """Manifest entries of the regular files (docs/FORMAT.md): the stat taken before
        the scan, and what the Rust pass measured (size, whole-file digest, block range)."""
        changed = set(self.changed)
        # The identity (ctime, inode, device) lets the next backup skip the file; a file
        # that changed while it was read has none, so the next backup reads it again.
        return [
            FileEntry(rel, stat.S_IMODE(st.st_mode), st.st_mtime_ns, size, digest, first, count)
            if rel in changed
            else FileEntry(
                rel,
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
                size,
                digest,
                first,
                count,
                ctime_ns=st.st_ctime_ns,
                ino=st.st_ino,
                dev=st.st_dev,
            )  # fmt: skip
            for (rel, _, st), (size, digest, first, count) in zip(self.read, self.out[0], strict=True)
        ]


def _discard_partial(staging: Path) -> None:
    """Removes what an interrupted pass wrote (the piece, its index scratch file and the
    block map) so the next pass can create them again."""
    for p in staging.iterdir():
        if p.name.startswith(store.PIECE) or p.name == store.BLOCKMAP:
            p.unlink()


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
