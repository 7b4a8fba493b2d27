"""WAL archiving: ``archive-push`` (archive_command) and ``archive-get``
(restore_command) for a ``postgresql`` database.

A pushed file is durable in the repository before push returns: it is copied into the
database's spool, ``REPO/wal/<name>/``, under a temporary name, fsynced, linked into place
(a link never replaces an existing name, so two pushes of one name cannot both win) and
the directory fsynced. The spool is then sealed into ARCHIVE_LOG sets by the engine's
ARCHIVE_LOG backup, whose archive directory it is: once `GROUP_SEGMENTS` files wait, or
the oldest has waited `GROUP_SECONDS`, the push that notices seals them (checksummed,
compressed as the database says, registered in one transaction); the files the catalog
now holds with the same digest then leave the spool. 10,000 segments are ~160 sets.

A push of a file from ``pg_wal`` also archives the other files PostgreSQL has marked
``.ready`` (``push_ahead``, pgBackRest's archive-async model): the archiver's calls for
those then find their file in the spool and are answered by ``archive_fast`` before the
command group is imported, which a process per segment otherwise pays on every call.

A crash at any point leaves either a spool file (still found by archive-get, sealed by
the next push) or a registered set (the spool copy is removed by the next seal): never a
segment that was reported archived and is not. The spool's ``.push.lock`` serialises
the check-and-write of pushes (PostgreSQL's archiver pushes one file at a time anyway);
``.seal.lock`` keeps two seals from sealing the same files twice.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _core, manifest, store
from ..enums import BackupType
from ..errors import BackupError, CatalogError, ConfigError, RustyBackupError
from .wal import is_archive_name

if TYPE_CHECKING:
    from ..catalog import DatabaseEntry
    from ..engine import BackupManager

log = logging.getLogger(__name__)

WAL_DIR = "wal"
GROUP_SEGMENTS = 64
GROUP_SECONDS = 300.0
# archive_command runs with the server's environment: how a deployment (or a test)
# changes the group size without a flag on every push.
GROUP_ENV = "RUSTYBACKUP_WAL_GROUP"
# How much one push archives ahead of PostgreSQL's calls (`push_ahead`): a group's worth,
# and at most 1 GiB, so the call PostgreSQL waits on stays bounded.
AHEAD_FILES = GROUP_SEGMENTS
AHEAD_BYTES = 1 << 30
_CHUNK = 1 << 20
_SENDFILE_CHUNK = 1 << 30


def spool_dir(repository: Path, database: str) -> Path:
    """Where pushed files wait to be sealed into a set."""
    return repository / WAL_DIR / database


class ArchiveMismatch(BackupError):
    """A file is already archived under this name with other content."""


class NotArchived(BackupError):
    """archive-get: no file of that name in the archive (the normal end of recovery)."""


@dataclass(frozen=True)
class PushResult:
    name: str
    digest: str
    already: bool
    sealed: str | None


@contextmanager
def _flock(path: Path, how: int) -> Iterator[bool]:
    """Yields whether the lock was taken (False only with LOCK_NB and a holder)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _check_name(name: str) -> str:
    if not is_archive_name(name):
        raise ConfigError(
            f"{name!r} is not a WAL file name PostgreSQL archives (a 24-hex-digit segment, "
            "TTTTTTTT.history, <segment>.<offset>.backup or <segment>.partial)"
        )
    return name


def _database(manager: BackupManager, database: str) -> DatabaseEntry:
    db = manager.catalog.get_database(database)
    if db.kind != "postgresql":
        raise ConfigError(f"database {database!r} is of kind {db.kind!r}; archive-push/get serve postgresql databases")
    return db


def push(
    manager: BackupManager,
    database: str,
    source: str | os.PathLike[str],
    *,
    seal: bool = True,
    ahead: bool = True,
) -> PushResult:
    """archive_command: archives `source` (its file name is the WAL name). Returns once
    the file is durable. Raises ArchiveMismatch when the name is taken by other content.
    With `ahead`, a push of a file PostgreSQL's archiver handed over also archives the
    other files it has marked ready (`push_ahead`)."""
    db = _database(manager, database)
    src = Path(source)
    name = _check_name(src.name)
    spool = spool_dir(manager.repository, database)
    spool.mkdir(parents=True, exist_ok=True)
    tmp = spool / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    with open(src, "rb") as fin:
        fd = _create(tmp)
        try:
            _copy(fin.fileno(), fd)
            # One digest, of the copy: what is archived is what the digest names, even if
            # `src` changed while it was read (read back from the page cache, this costs
            # less than hashing `src` and checking the copy against it). Mapped, which is
            # safe only because nobody else writes or truncates this private temporary
            # file, and halves the hash's time.
            digest = _core.hash_file(tmp, db.algorithm, mmap=True)
            with _flock(spool / ".push.lock", fcntl.LOCK_EX):
                known = _archived_digest(manager, spool, database, name, db.algorithm)
                if known is not None:
                    if known[0] != digest:
                        raise ArchiveMismatch(
                            f"{name} is already archived for {database!r} ({known[1]}) with digest {known[0]}, "
                            f"and {src} has digest {digest}: refusing to replace an archived WAL file"
                        )
                    log.info("%s is already archived for %s (%s); nothing to do", name, database, known[1])
                    # A push that linked it into the spool may have died before its
                    # directory fsync: success is reported only for a durable name.
                    store.fsync_dir(spool)
                    return PushResult(name, digest, True, None)
                os.fsync(fd)
                try:
                    os.link(tmp, spool / name)
                except FileExistsError:
                    raise BackupError(f"{spool / name} appeared while {src} was pushed") from None
                # Inside the lock: a push of the same name that finds this file waiting
                # reports success, so the link must be durable before anyone can see it.
                store.fsync_dir(spool)
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)
    sealed = seal_if_due(manager, database) if seal else None
    if ahead:
        # After the seal, so that what this call pushes ahead waits in the spool, where
        # the fast path finds it, until PostgreSQL has asked for each of those files.
        try:
            push_ahead(manager, database, src)
        except (OSError, RustyBackupError) as exc:
            # `name` is archived; the files ahead are PostgreSQL's to hand over again,
            # and their own calls report what fails with them.
            log.warning("pushing the ready files beside %s ahead failed: %s", src, exc)
    return PushResult(name, digest, False, sealed)


def _ready_names(source: Path) -> list[str]:
    """The other files PostgreSQL's archiver has marked ready beside `source`, in the
    order it would hand them over (history files first, then the oldest: pgarch.c), or
    none when `source` is not a file the archiver is handing over (its own ``.ready``
    marker in ``archive_status/`` is the proof: it stays until the command succeeds)."""
    status = source.parent / "archive_status"
    try:
        markers = os.listdir(status)
    except OSError:
        return []
    if f"{source.name}.ready" not in markers:
        return []
    names = [m[: -len(".ready")] for m in markers if m.endswith(".ready")]
    ready = [n for n in names if n != source.name and is_archive_name(n)]
    ready.sort(key=lambda n: (not n.endswith(".history"), n))
    return ready


def push_ahead(manager: BackupManager, database: str, source: str | os.PathLike[str]) -> list[str]:
    """Archives the files PostgreSQL has marked ready beside `source` (pgBackRest's
    ``archive-async``: one process pushes what is queued), so that the archiver's calls
    for them find each already in the spool, where ``archive_fast`` confirms it by
    comparing the bytes, without the catalog. Returns the names added.

    A file the spool or a set already holds is left for PostgreSQL's own call (which
    checks it and refuses other content); one that vanished meanwhile was archived and
    removed by a push beside us. Every file is fsynced before any is linked, and the
    spool directory once for the batch: a name is never visible before its bytes are
    durable."""
    src = Path(source)
    names = _ready_names(src)
    if not names:
        return []
    spool = spool_dir(manager.repository, database)
    spool.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path, int]] = []
    linked: list[str] = []
    size = 0
    try:
        for name in names:
            if len(staged) >= AHEAD_FILES or size >= AHEAD_BYTES:
                break
            if (spool / name).exists() or manager.catalog.archive_file(database, name) is not None:
                continue
            tmp = spool / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                fin = open(src.parent / name, "rb")  # noqa: SIM115 - closed below, fd kept for the fsync
            except FileNotFoundError:
                continue
            with fin:
                fd = _create(tmp)
                staged.append((name, tmp, fd))
                _copy(fin.fileno(), fd)
                size += os.fstat(fd).st_size
        # All copies first, then the fsyncs: the first one writes back most of the batch
        # and the others find little left to wait for.
        for _, _, fd in staged:
            os.fsync(fd)
        with _flock(spool / ".push.lock", fcntl.LOCK_EX):
            for name, tmp, _ in staged:
                try:
                    os.link(tmp, spool / name)
                except FileExistsError:
                    continue  # pushed by PostgreSQL's own call meanwhile: that one was checked
                linked.append(name)
            if linked:
                store.fsync_dir(spool)
    finally:
        for _, tmp, fd in staged:
            os.close(fd)
            tmp.unlink(missing_ok=True)
    if linked:
        log.info("pushed %d ready file(s) of %s ahead: %s..%s", len(linked), database, linked[0], linked[-1])
    return linked


def _archived_digest(
    manager: BackupManager, spool: Path, database: str, name: str, algorithm: str
) -> tuple[str, str] | None:
    """(digest, where) of `name` if it is archived: in the spool or in a registered set."""
    waiting = spool / name
    if waiting.exists():
        return _core.hash_file(waiting, algorithm), f"waiting in {waiting}"
    known = manager.catalog.archive_file(database, name)
    if known is not None:
        return known[0], f"set {known[1]}"
    return None


def _copy(in_fd: int, out_fd: int) -> None:
    """Copies `in_fd` from its start to `out_fd` in the kernel (sendfile), without passing
    16 MiB through Python; a file system that refuses sendfile is copied by reads."""
    offset = 0
    try:
        while sent := os.sendfile(out_fd, in_fd, offset, _SENDFILE_CHUNK):
            offset += sent
        return
    except OSError as exc:
        if offset or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while chunk := os.pread(in_fd, _CHUNK, offset):
        offset += len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out_fd, view) :]


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


def _spool_files(spool: Path) -> list[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(spool))
    except FileNotFoundError:
        return []
    return [e for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]


def purge_sealed(manager: BackupManager, database: str) -> int:
    """Removes spool files a registered set holds with the same digest; returns how many."""
    db = _database(manager, database)
    spool = spool_dir(manager.repository, database)
    removed = 0
    for entry in _spool_files(spool):
        known = manager.catalog.archive_file(database, entry.name)
        if known is None:
            continue
        if _core.hash_file(entry.path, db.algorithm) == known[0]:
            os.unlink(entry.path)
            removed += 1
    if removed:
        store.fsync_dir(spool)
    return removed


def seal_if_due(manager: BackupManager, database: str, *, force: bool = False) -> str | None:
    """Seals the spool into one ARCHIVE_LOG set when it is due (or `force`); returns the
    new set's id. A seal already running elsewhere makes this one a no-op."""
    spool = spool_dir(manager.repository, database)
    files = _spool_files(spool)
    if not files:
        return None
    oldest = min(e.stat(follow_symlinks=False).st_mtime for e in files)
    if not force and len(files) < _group_size() and time.time() - oldest < GROUP_SECONDS:
        return None
    with _flock(spool / ".seal.lock", fcntl.LOCK_EX | (0 if force else fcntl.LOCK_NB)) as taken:
        if not taken:
            return None
        purge_sealed(manager, database)
        if not _spool_files(spool):
            return None
        backup_set = manager.backup(database, BackupType.ARCHIVE_LOG, tags=("wal",))
        purge_sealed(manager, database)
        return backup_set.id


def _group_size() -> int:
    text = os.environ.get(GROUP_ENV, "")
    try:
        return max(1, int(text)) if text else GROUP_SEGMENTS
    except ValueError:
        raise ConfigError(f"{GROUP_ENV}={text!r} is not a number of WAL files") from None


def get(manager: BackupManager, database: str, name: str, dest: str | os.PathLike[str]) -> str:
    """restore_command: writes archived file `name` to `dest`; returns where it came
    from. Raises NotArchived when there is none."""
    db = _database(manager, database)
    _check_name(name)
    target = Path(dest)
    tmp = target.with_name(f".{target.name}.rb-{os.getpid()}-{secrets.token_hex(4)}")
    spool = spool_dir(manager.repository, database)
    try:
        try:
            with open(spool / name, "rb") as fin:
                fd = _create(tmp)
                try:
                    _copy(fin.fileno(), fd)
                finally:
                    os.close(fd)
            where = "spool"
        except FileNotFoundError:
            # Sealed meanwhile, or never here: the catalog knows.
            tmp.unlink(missing_ok=True)
            known = manager.catalog.archive_file(database, name)
            if known is None:
                raise NotArchived(f"{name} is not in the archive of {database!r}") from None
            _restore_one(manager, known[1], name, tmp)
            where = f"set {known[1]}"
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("archive-get %s of %s from %s", name, db.name, where)
    return where


def get_many(manager: BackupManager, database: str, names: list[str], dest_dir: Path) -> None:
    """Writes each of `names` into `dest_dir` (under its own name), one restore pass per
    set that holds some of them. A name the archive lacks raises NotArchived."""
    _database(manager, database)
    spool = spool_dir(manager.repository, database)
    by_set: dict[str, list[str]] = {}
    for name in names:
        _check_name(name)
        try:
            shutil.copyfile(spool / name, dest_dir / name)
            continue
        except FileNotFoundError:
            pass
        known = manager.catalog.archive_file(database, name)
        if known is None:
            raise NotArchived(f"{name} is not in the archive of {database!r}")
        by_set.setdefault(known[1], []).append(name)
    for set_id, wanted in by_set.items():
        _restore_from(manager, set_id, {n: dest_dir / n for n in wanted})


def _restore_one(manager: BackupManager, set_id: str, name: str, dest: Path) -> None:
    _restore_from(manager, set_id, {name: dest})


def _restore_from(manager: BackupManager, set_id: str, wanted: dict[str, Path]) -> None:
    set_dir = manager.repo.set_dir(set_id)
    with manager.reading([set_id]):
        m = manifest.load(set_dir / store.MANIFEST, set_id=set_id)
        entries = {f.path: f for f in m.files if f.path in wanted}
        missing = sorted(set(wanted) - set(entries))
        if missing:
            raise CatalogError(f"the catalog places {missing[0]} in set {set_id}, whose manifest does not list it")
        pieces = [manager.repository / store.SETS_DIR / s.set_id / s.piece for s in m.sources]
        jobs = [(n, wanted[n], e.first_block, e.block_count, e.size, e.digest) for n, e in entries.items()]
        try:
            from .. import keys

            block_keys = keys.source_block_keys(manager.repository, [s.set_id for s in m.sources])
            _core.restore_files(jobs, manager.repository / m.blockmap.path, pieces, keys=block_keys)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise BackupError(f"archive-get: {exc.filename} exists") from exc
            raise


def archived(manager: BackupManager, database: str) -> dict[str, tuple[str, int]]:
    """Every archived file of `database`: name -> (where, push time in µs), from the
    sets' manifests and the spool."""
    out: dict[str, tuple[str, int]] = {}
    for s in manager.catalog.list_sets(database, BackupType.ARCHIVE_LOG):
        m = manifest.load(manager.repository / s.manifest, set_id=s.id)
        for f in m.files:
            out.setdefault(f.path, (s.id, f.mtime_ns // 1000))
    for e in _spool_files(spool_dir(manager.repository, database)):
        out.setdefault(e.name, ("spool", e.stat(follow_symlinks=False).st_mtime_ns // 1000))
    return out
