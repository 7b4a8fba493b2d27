"""Every lock of a repository, in one place (docs/FORMAT.md "Locks").

- The staging lock: ``<dir>/.lock``, an exclusive flock a backup holds on the directory
  it writes (``staging/<id>/``, then ``sets/<id>/`` until the set is registered). The
  sweep leaves a locked directory alone.
- The readers' locks: ``readers/<set-id>``, one file per set being read, shared flocks of
  restores and verifications. ``delete`` takes a set's file exclusively, so a set is
  never deleted under a reader; a retention plan learns every set being read from one
  listing of ``readers/``, opening only the files listed there.
- The catalog rebuild lock: ``.rebuild.lock``, held by the process that checks whether
  ``catalog.db`` is lost and rebuilds it.
- The scheduler's leases: a claimed run stays claimed while its lease is renewed
  (`LeaseKeeper`), so only a dead process loses its runs.

flock locks belong to the open file description: they vanish when the process dies, so
a crash never leaves a set locked, only a lock file that the next look removes.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BackupError, CatalogError, RustyBackupError

log = logging.getLogger(__name__)

STAGING_LOCK = ".lock"
READERS_DIR = "readers"
REBUILD_LOCK = ".rebuild.lock"
# A read of more sets than this registers as one file listing them (``readers/bulk-*``)
# instead of one lock each: verifying 50,000 sets must not need 50,000 descriptors.
BULK_AT = 256
BULK_PREFIX = "bulk-"
# Taken exclusively, briefly, by a bulk reader registering and by a delete deciding: so a
# delete never misses a bulk read that starts meanwhile.
GATE = ".gate"
# Held shared by every backup from before it creates ``staging/<id>/`` until that
# directory's ``.lock`` is in place (`creating_staging`).
CREATING_LOCK = ".staging.lock"
# keys.py's keyring read-modify-write (key rotate), under REPO/keys/.
KEYRING_LOCK = ".keyring.lock"
# A temporary file this young may be an atomic_writer's still being written; the sweep
# leaves it for a later run.
YOUNG_SECONDS = 60.0


# --- the staging lock ----------------------------------------------------------------


@contextmanager
def _flocked(path: Path, operation: int) -> Iterator[None]:
    """``path`` (created if missing, never through a link) held with ``flock(operation)``
    for the block; a non-blocking operation that fails raises BlockingIOError."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


@contextmanager
def keyring_lock(keys_dir: Path) -> Iterator[None]:
    """``REPO/keys/.keyring.lock`` held exclusively while the keyring is read, changed and
    written back (``key rotate``, keys.py), so two rotations never write over each other's
    new key generation (a set wrapped to a lost generation could never be opened)."""
    with _flocked(keys_dir / KEYRING_LOCK, fcntl.LOCK_EX):
        yield


@contextmanager
def reencrypt_lock(root: Path) -> Iterator[None]:
    """``REPO/reencrypt/.lock`` held exclusively by the one re-encryption run
    (reencrypt.py) a repository may have at a time; a second is refused at once."""
    from .errors import EncryptionError

    (root / "reencrypt").mkdir(exist_ok=True)
    try:
        with _flocked(root / "reencrypt" / ".lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
            yield
    except BlockingIOError:
        raise EncryptionError(f"{root}: another re-encryption is running in this repository") from None


@contextmanager
def creating_staging(root: Path) -> Iterator[None]:
    """A shared flock on ``REPO/.staging.lock`` around creating a staging directory and
    taking its ``.lock``. While anyone holds it, a directory without ``.lock`` may be one
    being born; once no one does, such a directory is a killed backup's leftover. (An
    age rule left a directory killed in that window for a minute, and a backup that
    started inside that minute found it still there.)"""
    with _flocked(root / CREATING_LOCK, fcntl.LOCK_SH):
        yield


def _held_elsewhere(fd: int) -> bool:
    """Whether another open file description holds a flock on ``fd``'s file; closes ``fd``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _someone_creating(root: Path) -> bool:
    try:
        fd = os.open(root / CREATING_LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: keep the directory
    return _held_elsewhere(fd)


def hold_staging_lock(directory: Path) -> int:
    """Creates and flocks ``directory/.lock``; returns the descriptor that holds it.

    The lock is taken under a temporary name and renamed into place, so ``.lock`` never
    exists unlocked while its backup lives: a sweep that found it between creation and
    flock would take the directory for a crash leftover and delete it. Before the rename
    the directory has no ``.lock``; `creating_staging`, held around both, covers it.
    """
    pending = directory / (STAGING_LOCK + ".new")
    fd = os.open(pending, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(pending, directory / STAGING_LOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def take_abandoned_staging(directory: Path) -> int | None:
    """Takes the staging lock of a directory a stopped backup left (a resumable one,
    resume.py) without waiting; returns the descriptor holding it, or None when a live
    backup holds it or the directory went meanwhile."""
    path = directory / STAGING_LOCK
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not _same_file(fd, path):  # removed (swept or taken over) before we locked it
        os.close(fd)
        return None
    return fd


def drop_staging_lock_file(directory: Path) -> None:
    """Removes ``directory/.lock`` once the set is registered (the descriptor still
    holds the lock until closed, so no sweep can slip in between)."""
    try:
        os.unlink(directory / STAGING_LOCK)
    except FileNotFoundError:
        pass


def is_staging_locked(directory: Path) -> bool:
    """True when a live backup holds ``directory/.lock`` (``REPO/<sub>/<id>``), or when
    the directory has no lock yet and some backup is between creating a staging
    directory and locking it (`creating_staging`)."""
    try:
        fd = os.open(directory / STAGING_LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return _someone_creating(directory.parent.parent)
    return _held_elsewhere(fd)


# --- the catalog rebuild lock --------------------------------------------------------


@contextmanager
def catalog_rebuild_lock(root: Path) -> Iterator[None]:
    """``REPO/.rebuild.lock`` held exclusively while a process decides whether the
    catalog is lost and rebuilds it, so two processes never rebuild it at once (the
    second then finds the first one's catalog). A repository where the lock file cannot
    be created (read-only) is only read: it goes without."""
    fd: int | None = None
    try:
        fd = os.open(root / REBUILD_LOCK, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def capture_lock(root: Path, database: str) -> Iterator[None]:
    """``REPO/.capture-<database>.lock``, held exclusively by a SQLite WAL capture step:
    two captures of one database would each resume from the same frame. A second one
    fails at once (BackupError) instead of waiting behind a foreground capturer."""
    fd = os.open(root / f".capture-{database}.lock", os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another WAL capture of {database!r} is running in this repository") from None
        yield
    finally:
        os.close(fd)


# --- the readers' locks --------------------------------------------------------------


class SetBusy(CatalogError):
    """A set is being read (a restore or verification holds it)."""


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a lock on an unlinked file
    protects nothing)."""
    try:
        st = path.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class ReaderLocks:
    """The ``readers/`` directory of one repository."""

    def __init__(self, root: Path) -> None:
        self.dir = root / READERS_DIR

    def _path(self, set_id: str) -> Path:
        # Callers pass validated ids (store.check_set_id): a file name, never a path.
        return self.dir / set_id

    def _lock(self, set_id: str, how: int) -> int:
        """An open, locked descriptor of the set's reader file, created if need be.
        Raises BlockingIOError when `how` has LOCK_NB and the lock is held."""
        self.dir.mkdir(exist_ok=True)
        path = self._path(set_id)
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, how)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                return fd
            # The last holder removed the file while we waited: lock the new one.
            os.close(fd)

    def _release(self, fd: int, path: Path) -> None:
        """Closes a reader's descriptor; the last one out removes the file, so the
        listing names only sets that are being read."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another reader (or a deleter) holds it: it cleans up
        else:
            if _same_file(fd, path):
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    @contextmanager
    def reading(self, set_ids: Iterable[str]) -> Iterator[None]:
        """Shared locks on `set_ids` for the duration of the block (more than `BULK_AT`
        sets: one bulk file naming them all)."""
        ids = list(dict.fromkeys(set_ids))
        if len(ids) > BULK_AT:
            with self._bulk(ids):
                yield
            return
        held: list[tuple[int, Path]] = []
        try:
            for sid in ids:
                held.append((self._lock(sid, fcntl.LOCK_SH), self._path(sid)))
            yield
        finally:
            for fd, path in reversed(held):
                self._release(fd, path)

    @contextmanager
    def _gate(self) -> Iterator[None]:
        self.dir.mkdir(exist_ok=True)
        with _flocked(self.dir / GATE, fcntl.LOCK_EX):
            yield

    @contextmanager
    def _bulk(self, ids: list[str]) -> Iterator[None]:
        path = self.dir / f"{BULK_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        with self._gate():
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                data = memoryview(("\n".join(ids) + "\n").encode())
                while data:
                    data = data[os.write(fd, data) :]
            except BaseException:
                path.unlink(missing_ok=True)
                os.close(fd)
                raise
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def _bulk_ids(self, names: Iterable[str]) -> set[str]:
        """The ids the live bulk readers among `names` list; a crashed one's file goes."""
        out: set[str] = set()
        for name in names:
            if not name.startswith(BULK_PREFIX):
                continue
            path = self.dir / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ELOOP):
                    raise
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    with os.fdopen(os.dup(fd), "rb") as fh:
                        out.update(line.decode("ascii", "replace") for line in fh.read().split())
                else:
                    path.unlink(missing_ok=True)  # nobody holds it: a crashed reader's
            finally:
                os.close(fd)
        return out

    @contextmanager
    def deleting(self, set_id: str) -> Iterator[None]:
        """The set's reader file held exclusively: no reader can start on it meanwhile.
        Raises SetBusy at once when one is reading it."""
        busy = f"backup set {set_id} is being read (a restore or verification holds it); try again later"
        try:
            fd = self._lock(set_id, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SetBusy(busy) from None
        try:
            # Held to the end: a bulk read registering meanwhile waits for the delete.
            with self._gate():
                if set_id in self._bulk_ids(os.listdir(self.dir)):
                    raise SetBusy(busy)
                yield
        finally:
            self._release(fd, self._path(set_id))

    @contextmanager
    def switching(self, root: Path, set_ids: Iterable[str]) -> Iterator[None]:
        """What re-encryption (reencrypt.py) holds while it switches a chain's sets to
        their re-sealed files: every set's reader file exclusively (no restore or
        verification is inside them; SetBusy at once when one is) and ``.staging.lock``
        exclusively (no backup creates a staging directory meanwhile), and no live
        backup in ``staging/`` (SetBusy: its parent may be in the chain, and its map
        would record the parent map's old checksum). Held for renames, not for the
        re-sealing itself, so backups wait milliseconds, not the whole run."""
        ids = list(dict.fromkeys(set_ids))
        held: list[tuple[int, Path]] = []
        busy = "backup set {} is being read (a restore or verification holds it); the switch waits for the next run"
        try:
            for sid in ids:
                try:
                    held.append((self._lock(sid, fcntl.LOCK_EX | fcntl.LOCK_NB), self._path(sid)))
                except BlockingIOError:
                    raise SetBusy(busy.format(sid)) from None
            with _flocked(root / CREATING_LOCK, fcntl.LOCK_EX), self._gate():
                bulk = self._bulk_ids(os.listdir(self.dir)) & set(ids)
                if bulk:
                    raise SetBusy(busy.format(sorted(bulk)[0]))
                staging = root / "staging"
                for d in sorted(staging.iterdir()) if staging.is_dir() else []:
                    # Not is_staging_locked: its "someone is creating" test would
                    # find the creating lock this process holds.
                    if d.is_dir() and (d / STAGING_LOCK).exists() and is_staging_locked(d):
                        raise SetBusy(f"a backup is running ({d.name}); the switch waits for the next run")
                yield
        finally:
            for fd, path in reversed(held):
                self._release(fd, path)

    def being_read(self, valid: Callable[[str], bool] = lambda _: True) -> set[str]:
        """The ids of every set a reader holds now: one listing of ``readers/``, then one
        look at each file listed (not one per set of the repository). Files a crashed
        reader left behind are removed on the way."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return set()
        busy = self._bulk_ids(names)
        for name in names:
            if name == GATE or name.startswith(BULK_PREFIX):
                continue
            if not valid(name):
                log.warning("ignoring %s: not a backup set id", self.dir / name)
                continue
            path = self.dir / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ELOOP):
                    raise
                continue  # gone meanwhile (its reader finished), or not a file we made
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.add(name)
                os.close(fd)
                continue
            # Nobody holds it: a crashed reader's leftover.
            if _same_file(fd, path):
                path.unlink(missing_ok=True)
            os.close(fd)
        return busy


# --- the scheduler's leases ----------------------------------------------------------


class LeaseKeeper:
    """Renews the leases of the runs in progress every `period` seconds, so only a
    dead process loses one. One thread per keeper (not per run); it ends once no run is
    in progress and starts again with the next."""

    def __init__(self, renew: Callable[[str], None], period: float) -> None:
        self._renew = renew
        self._period = max(period, 0.05)
        self._lock = threading.Lock()
        self._active: dict[str, None] = {}
        self._thread: threading.Thread | None = None

    def start(self, lease_id: str) -> None:
        with self._lock:
            self._active[lease_id] = None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="rustybackup-lease", daemon=True)
                self._thread.start()

    def stop(self, lease_id: str) -> None:
        with self._lock:
            self._active.pop(lease_id, None)

    def active(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def _beat(self) -> None:
        while True:
            threading.Event().wait(self._period)
            with self._lock:
                active = list(self._active)
                if not active:
                    self._thread = None
                    return
            for lease_id in active:
                try:
                    self._renew(lease_id)
                except (RustyBackupError, sqlite3.Error, OSError) as exc:  # a busy catalog: next period
                    log.warning("lease renewal of %s failed: %s", lease_id, exc)


# Remote repositories' locks are objects (locks/<uuid>.json); their code lives beside this
# module and is reached from here, the one place every lock is found.
from .remote_locks import check_unlocked as check_unlocked  # noqa: E402
from .remote_locks import live_locks as live_locks  # noqa: E402
from .remote_locks import remote_lock as remote_lock  # noqa: E402

__all__ = [
    "BULK_AT",
    "BULK_PREFIX",
    "GATE",
    "READERS_DIR",
    "REBUILD_LOCK",
    "STAGING_LOCK",
    "LeaseKeeper",
    "ReaderLocks",
    "SetBusy",
    "catalog_rebuild_lock",
    "keyring_lock",
    "drop_staging_lock_file",
    "creating_staging",
    "hold_staging_lock",
    "is_staging_locked",
    "check_unlocked",
    "live_locks",
    "remote_lock",
]
