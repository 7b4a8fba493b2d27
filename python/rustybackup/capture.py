"""Continuous capture of a live SQLite database's WAL (as Litestream does it, with the
catalog's sets): one step copies the commits added to the WAL since the previous step
into an ARCHIVE_LOG set, with the time the step saw them, and then checkpoints.

A step (the ARCHIVE_LOG backup of a ``sqlite`` database, so the scheduler can run it
every minute) holds a read transaction while it copies: the WAL cannot be restarted
under it. A restart between steps starts a new generation (new salts), and the next
step must know whether the new generation builds on the last frame it copied:

- `WalGuard` (held by ``rustybackup capture``, the foreground capturer) keeps a read
  transaction open between steps, handed from one connection to the next, so a restart
  can only happen once every frame is copied: continuity is proven.
- Without it, a step whose own checkpoint found every frame copied into the database
  file exactly at its last captured frame leaves a *seal*. A later restart of that very
  WAL (salt-1 and the checkpoint sequence one higher), with no committed frame of the old
  generation left after the sealed one, continues it. This assumes nobody else
  checkpointed in between (an application with ``PRAGMA wal_autocheckpoint=0``).
- Otherwise frames may have been lost, and the step says so: the new generation is
  recorded as not continuous, and a restore to a point in it needs a backup taken in it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, replace
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

from . import _core, manifest, store
from .capture_recover import recover
from .capture_spool import Segment, Spool, Tip, file_name, spool_dir
from .enums import BackupType
from .errors import BackupError, CatalogError
from .locks import capture_lock
from .sqlite_wal import (
    FRAME_HEADER_LEN,
    HEADER_LEN,
    Seal,
    WalCapture,
    begin_read,
    checkpoint,
    end_read,
    read_seal,
    read_wal,
    wal_header,
    wal_path,
    write_seal,
)
from .timestamps import to_us

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .catalog import BackupSet, DatabaseEntry
    from .engine import BackupManager

log = logging.getLogger(__name__)


class WalGuard:
    """A read transaction on the database held between capture steps. `handover` starts
    a new one before ending the old, so some reader always pins the WAL: it cannot be
    restarted while frames that were never copied are in it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = begin_read(db)
        self.after_set: str | None = None
        # Set by the capturer for a step right after another, whose copy is small: only
        # such a step takes the write lock to let a long WAL restart (CaptureStep).
        self.roll_over = False
        self.rolled_over = False
        # Set by a foreground capturer that spools (capture_spool.py): its steps register
        # the spooled frames instead of reading the WAL.
        self.spool: Spool | None = None
        # A connection whose read transaction ended, kept for the next one: the spool's
        # rollovers move the pin dozens of times a second, and opening a connection
        # costs more than the transaction.
        self._spare: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _begin(self) -> sqlite3.Connection:
        conn, self._spare = self._spare, None
        if conn is not None:
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.Error:
                conn.close()
        return begin_read(self.db)

    def _end(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.close()
            return
        if self._spare is None:
            self._spare = conn
        else:
            conn.close()

    def move(self) -> None:
        """A fresh read transaction in place of the held one (begun first: some reader
        always pins the WAL), so a checkpoint may backfill up to now."""
        with self._lock:
            fresh = self._begin()
            old, self._conn = self._conn, fresh
            if old is not None:
                self._end(old)

    def handover(self, set_id: str) -> None:
        """Called once set `set_id` is registered, before its step ends its own read."""
        with self._lock:
            fresh = self._begin()
            old, self._conn = self._conn, fresh
            if old is not None:
                self._end(old)
            self.after_set = set_id

    def release(self) -> None:
        """Ends the pin (only while the caller holds the write lock: see `CaptureStep`)."""
        with self._lock:
            if self._conn is not None:
                self._end(self._conn)
                self._conn = None

    def pin(self, set_id: str | None) -> None:
        """Pins again after `release`, vouching for the WAL from set `set_id` on."""
        with self._lock:
            if self._conn is None:
                self._conn = self._begin()
            self.after_set = set_id

    def proves(self, set_id: str) -> bool:
        """Whether the WAL was pinned without a gap since set `set_id` was registered."""
        return self._conn is not None and self.after_set == set_id

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                end_read(self._conn)
                self._conn = None
            if self._spare is not None:
                self._spare.close()
                self._spare = None


@dataclass(frozen=True)
class Previous:
    """The newest capture set of a database and its record."""

    set: BackupSet
    record: WalCapture


def newest_capture(manager: BackupManager, database: str) -> Previous | None:
    """The newest available ARCHIVE_LOG set of `database` that holds a WAL capture."""
    newest = manager.catalog.newest_set(database, BackupType.ARCHIVE_LOG)
    if newest is None:
        return None
    record = _wal_record(manager.repo.set_dir(newest.id) / store.MANIFEST, newest.id)
    # A set of several records resumes from its last one.
    return None if record is None else Previous(newest, record.last)


_RECORDS: OrderedDict[tuple[Path, str], WalCapture | None] = OrderedDict()
_RECORDS_KEPT = 64
_RECORDS_LOCK = threading.Lock()


def _wal_record(path: Path, set_id: str) -> WalCapture | None:
    """A registered set's capture record. A manifest never changes once its set is
    registered, and every step asks for the newest one several times: kept in memory
    (the step that registered a set puts its record there, `_remember`)."""
    key = (path, set_id)
    with _RECORDS_LOCK:
        if key in _RECORDS:
            _RECORDS.move_to_end(key)
            return _RECORDS[key]
    m = manifest.load(path, set_id=set_id)
    record = m.wal if isinstance(m.wal, WalCapture) else None
    _remember(path, set_id, record)
    return record


def _remember(path: Path, set_id: str, record: WalCapture | None) -> None:
    with _RECORDS_LOCK:
        _RECORDS[(path, set_id)] = record
        while len(_RECORDS) > _RECORDS_KEPT:
            _RECORDS.popitem(last=False)


def seal_path(repository: Path, database: str) -> Path:
    """Where the newest seal of `database`'s WAL is kept (sqlite_wal.Seal)."""
    return repository / f".capture-{database}.seal"


class CaptureStep:
    """One capture step's read transaction and what it copied. `collect` writes the new
    frames to a file in staging; `finish` checkpoints once the set is registered."""

    def __init__(self, manager: BackupManager, db: DatabaseEntry) -> None:
        self.manager = manager
        self.db = db
        self.path = Path(db.path)
        guard = manager.wal_guards.get(db.name)
        self.spool = None if guard is None else guard.spool
        self.segments: list[Segment] = []
        self.copy: Path | None = None
        self.record: WalCapture | None = None
        self._writer: sqlite3.Connection | None = None
        self.conn: sqlite3.Connection | None = None
        self._lock: AbstractContextManager[None]
        if self.spool is not None:
            # The spooling capturer holds the capture lock for its whole run, and the
            # frames are in the spool: this step holds no lock of the database.
            self._lock = nullcontext()
            return
        self._lock = capture_lock(manager.repository, db.name)
        self._lock.__enter__()
        try:
            self.spool = self._recover()
            if self.spool is not None:
                return  # this step registers what a stopped capturer spooled, nothing else
            if guard is not None and guard.roll_over and _wal_is_long(manager, db.name, self.path):
                self._writer = _write_lock(self.path)
                if self._writer is not None and not _tail_is_short(manager, db.name, self.path):
                    # Copying a long tail under the write lock would stall the application.
                    self._release_writer()
            self.conn = begin_read(self.path)
            mode = str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                raise BackupError(
                    f"sqlite database {db.name!r} ({self.path}) is in journal_mode={mode}; WAL capture needs "
                    "PRAGMA journal_mode=WAL (take FULL/INCREMENTAL backups instead, or switch it)"
                )
        except BaseException:
            if self.conn is not None:
                end_read(self.conn)
            self._release_writer()
            self._lock.__exit__(None, None, None)
            raise

    def _recover(self) -> Spool | None:
        """The spool a capturer left when it stopped without registering it (killed, or
        its last registration failed): its segments, checked (capture_recover.py), for
        this step to register before any step reads the WAL past them."""
        directory = spool_dir(self.manager.repository, self.db.name)
        if not directory.is_dir():
            return None
        prev = newest_capture(self.manager, self.db.name)
        segs = recover(directory, None if prev is None else prev.record)
        if not segs:
            shutil.rmtree(directory, ignore_errors=True)
            return None
        last = segs[-1]
        tip = Tip(last.generation, last.salt, last.last_frame, last.checksum)
        return Spool(directory, None, tip, self.manager.clock, recovered=segs)

    def collect(self, staging: Path) -> tuple[list[tuple[str, Path, os.stat_result]], WalCapture]:
        """Copies the frames committed since the previous step into `staging`; returns the
        file to store (none when nothing is new) and the set's `wal` record."""
        if self.spool is not None:
            return self._collect_spooled(self.spool)
        prev = newest_capture(self.manager, self.db.name)
        p = None if prev is None else prev.record
        resume = None
        if p is not None and p.salt is not None and p.checksum is not None:
            resume = (p.salt, p.last_frame, p.checksum)
        # Transient: the engine stores it in the set's piece (made durable there) and
        # the step removes it before the set is published. Rust reads the WAL in large
        # reads and writes the frames it checked, without passing them through Python.
        self.copy = staging / ".capture-frames"
        wal = wal_path(self.path)
        try:
            read = _core.wal_copy(wal, self.copy, resume)
        except OSError as exc:
            raise BackupError(f"cannot read the WAL {wal}: {exc.strerror or exc}") from exc
        # Taken after the frames were read: a restore to T never holds a commit made after T.
        seen = to_us(self.manager.clock())
        record = self._record(prev, read, seen)
        self.record = record
        if record.file is None or read is None:
            self.discard_copy()
            return [], record
        return [(record.file, self.copy, self.copy.stat())], record

    def _collect_spooled(self, spool: Spool) -> tuple[list[tuple[str, Path, os.stat_result]], WalCapture]:
        """The spool's segments since the last set: one record each, in one set."""
        self.segments = spool.cut()
        if not self.segments:
            t = spool.tip
            prev = newest_capture(self.manager, self.db.name)
            page_size = 0 if prev is None else prev.record.page_size
            self.record = WalCapture(
                generation=t.generation,
                salt=t.salt,
                page_size=page_size,
                first_frame=t.frame + 1,
                last_frame=t.frame,
                seed=t.checksum,
                checksum=t.checksum,
                commits=(),
                continuous=True,
                note="",
                file=None,
            )
            return [], self.record
        records = [seg.record() for seg in self.segments]
        self.record = replace(records[0], then=tuple(records[1:]))
        files = [(r.file, seg.path, seg.path.stat()) for r, seg in zip(records, self.segments, strict=True)]
        return [(name, path, st) for name, path, st in files if name is not None], self.record

    def _record(self, prev: Previous | None, read: _core.WalCopy | None, seen: int) -> WalCapture:
        p = None if prev is None else prev.record
        if read is None:
            if p is None or p.salt is None:
                # No WAL yet (or still none): nothing to copy, nothing lost.
                return WalCapture(
                    generation=0 if p is None else p.generation,
                    salt=None,
                    page_size=0,
                    first_frame=1,
                    last_frame=0,
                    seed=None,
                    checksum=None,
                    commits=(),
                    continuous=p is not None,
                    note="no WAL file",
                    file=None,
                )
            # The WAL went away (the last connection to close checkpointed and removed it,
            # or a TRUNCATE checkpoint emptied it): commits after the last captured frame
            # may have gone into the database file without passing through a capture.
            why = (
                f"the WAL of generation {p.generation} was removed or emptied after frame {p.last_frame} "
                "(the last connection closed, or a TRUNCATE checkpoint); later commits in it may not have been "
                "captured: keep a connection open (or run 'rustybackup capture'), and take a backup to go on"
            )
            log.warning("%s: %s", self.db.name, why)
            return WalCapture(
                generation=p.generation + 1,
                salt=None,
                page_size=0,
                first_frame=1,
                last_frame=0,
                seed=None,
                checksum=None,
                commits=(),
                continuous=False,
                note=why,
                file=None,
            )
        scan = read
        notes: list[str] = []
        follows: tuple[int, int, int] | None = None
        if read.resumed and p is not None:
            generation, continuous = p.generation, True
        else:
            generation = 1 if p is None else p.generation + 1
            follows, why = self._new_generation(prev, read)
            continuous = follows is not None
            notes.append(why)
        damaged = read.stop_kind in ("checksum", "page_zero")
        if damaged and read.following_bytes >= FRAME_HEADER_LEN + scan.page_size:
            # Whole frames follow the one that failed: it is not a frame being written.
            notes.append(f"the WAL is damaged: {read.stop}, and {read.following_bytes} bytes follow it")
            log.error("%s: %s", self.db.name, notes[-1])
        seed = scan.header_checksum if read.first_frame == 1 else (p.checksum if p is not None else None)
        commits = tuple(zip(scan.commits, repeat(seen)))
        last = scan.last_commit if scan.last_commit is not None else read.first_frame - 1
        return WalCapture(
            generation=generation,
            salt=scan.salt,
            page_size=scan.page_size,
            first_frame=read.first_frame,
            last_frame=last,
            seed=seed,
            checksum=scan.checksum,
            commits=commits,
            continuous=continuous,
            note="; ".join(notes),
            file=None if not commits else file_name(generation, read.first_frame, last),
            follows=follows,
        )

    def _new_generation(self, prev: Previous | None, read: _core.WalCopy) -> tuple[tuple[int, int, int] | None, str]:
        """What a generation the step has not seen before builds on, and why (None: a hole)."""
        p = None if prev is None else prev.record
        salt = read.salt
        old = "none" if p is None or p.salt is None else f"{p.salt[0]:08x}{p.salt[1]:08x}"
        new = f"{salt[0]:08x}{salt[1]:08x}"
        guard = self.manager.wal_guards.get(self.db.name)
        if (
            prev is not None
            and p is not None
            and p.salt is not None
            and guard is not None
            and guard.proves(prev.set.id)
        ):
            why = f"WAL restarted (salts {old} -> {new}) while the capturer pinned it: generation {p.generation + 1} continues"
            log.info("%s: %s", self.db.name, why)
            return (p.salt[0], p.salt[1], p.last_frame), why
        sealed = self._sealed_restart(read)
        if sealed is not None:
            return sealed
        if prev is None:
            return None, "first capture of this database"
        assert p is not None
        why = (
            f"new WAL generation {p.generation + 1}: the WAL was restarted or replaced (salts {old} -> {new}) "
            f"since set {prev.set.id}; commits made in between may not have been captured, so restoring to a point "
            "after this needs a backup taken after it"
        )
        log.warning("%s: %s", self.db.name, why)
        return None, why

    def _seal_path(self) -> Path:
        return seal_path(self.manager.repository, self.db.name)

    def _sealed_restart(self, read: _core.WalCopy) -> tuple[tuple[int, int, int], str] | None:
        """The sealed point the new generation continues, or None when it may not."""
        seal = read_seal(self._seal_path())
        scan = read
        if seal is None or seal.page_size != scan.page_size:
            return None
        if (
            scan.salt[0] != (seal.salt[0] + 1) & 0xFFFFFFFF
            or scan.checkpoint_seq != (seal.checkpoint_seq + 1) & 0xFFFFFFFF
        ):
            return None  # not one restart of the sealed WAL (a new file, or several restarts)
        if not seal.db_untouched(self.path):
            return None  # a checkpoint wrote since: maybe frames after the sealed one
        if _old_commit_after(self.path, seal, scan):
            return None
        why = (
            f"WAL restarted (salts {seal.salt[0]:08x}{seal.salt[1]:08x} -> {scan.salt[0]:08x}{scan.salt[1]:08x}) "
            f"after every frame through {seal.frame} was checkpointed (sealed); the new generation continues it"
        )
        log.info("%s: %s", self.db.name, why)
        return (seal.salt[0], seal.salt[1], seal.frame), why

    def _seal(self, record: WalCapture) -> None:
        """After a checkpoint: when the database file holds every frame exactly through the
        last one captured, and no frame follows it, leave the seal (else remove it)."""
        seal = self._seal_path()
        # A seal speaks for the WAL as it is now or not at all: an older one must not
        # vouch for a restart that followed frames captured since.
        seal.unlink(missing_ok=True)
        busy, frames, done = checkpoint(self.path)
        log.debug(
            "%s: checkpoint busy=%d log=%d checkpointed=%d",
            self.db.name,
            busy,
            frames,
            done,
        )
        if record.salt is None or record.checksum is None or record.last_frame == 0:
            return
        if busy or not frames == done == record.last_frame:
            return
        after = read_wal(self.path, (record.salt, record.last_frame, record.checksum))
        if after is None or not after.resumed or after.scan.frames or after.uncommitted:
            return
        write_seal(
            seal,
            Seal.of(
                self.path,
                record.salt,
                record.last_frame,
                record.checksum,
                record.page_size,
                after.scan.checkpoint_seq,
            ),
        )

    def discard_copy(self) -> None:
        if self.copy is not None:
            self.copy.unlink(missing_ok=True)
            self.copy = None

    def finish(self, registered: str | None) -> None:
        """Ends the step. Once its set is registered (`registered` is its id) the frames
        are safe: the guard (if any) takes over the pin, then a passive checkpoint copies
        into the database file what the readers allow (never past this step's snapshot,
        which it still holds)."""
        try:
            record = self.record
            if self.spool is not None:
                if registered is None:
                    self.spool.put_back(self.segments)
                else:
                    if record is not None:
                        _remember(self.manager.repo.set_dir(registered) / store.MANIFEST, registered, record)
                    self.spool.discard(self.segments)
                    if self.spool.wal is None:
                        self.spool.close()  # a recovered spool, now registered
                self.segments = []
                return
            if registered is not None and record is not None:
                # The manifest just written holds this record: the next step need not
                # parse it back (tens of thousands of commits at synchronous=NORMAL).
                _remember(self.manager.repo.set_dir(registered) / store.MANIFEST, registered, record)
                guard = self.manager.wal_guards.get(self.db.name)
                try:
                    if guard is not None and self._writer is not None:
                        self._roll_over(guard, registered, record)
                    else:
                        if guard is not None:
                            guard.handover(registered)
                        self._seal(record)
                except BackupError as exc:
                    log.warning(
                        "%s: %s (the frames are safe; the next step tries again)",
                        self.db.name,
                        exc,
                    )
        finally:
            self.discard_copy()
            if self.conn is not None:
                end_read(self.conn)
                self.conn = None
            self._release_writer()
            self._lock.__exit__(None, None, None)

    def _roll_over(self, guard: WalGuard, registered: str, record: WalCapture) -> None:
        """Lets a long WAL restart without a hole. The guard pins the WAL so that it
        never restarts under the capturer, so under steady writes it would only grow
        (and every commit of the application would try a checkpoint). This step holds
        the write lock, so the WAL it copied is the whole WAL: the pins are dropped, a
        passive checkpoint copies every frame into the database file, and the guard pins
        again before the write lock goes. The next writer then restarts the WAL right
        after the last frame copied, and the guard vouches for that."""
        guard.release()
        if self.conn is not None:
            end_read(self.conn)
            self.conn = None
        try:
            self._seal(record)
            guard.rolled_over = read_seal(self._seal_path()) is not None
        finally:
            guard.pin(registered)

    def _release_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._writer.close()
            self._writer = None


ROLLOVER_FRAMES = 500
"""A capturer that pins the WAL lets it restart once it holds this many frames (below
SQLite's automatic checkpoint at 1000 pages, so the application's commits rarely try
checkpoints that the pin would keep from finishing)."""


def wal_is_long(manager: BackupManager, database: str) -> bool:
    """Whether the WAL's current generation holds ROLLOVER_FRAMES captured frames."""
    return _wal_is_long(manager, database, Path(manager.catalog.get_database(database).path))


def _wal_is_long(manager: BackupManager, database: str, db: Path) -> bool:
    prev = newest_capture(manager, database)
    if prev is None or prev.record.salt is None:
        return False
    try:
        with open(wal_path(db), "rb") as fh:
            head = fh.read(HEADER_LEN)
    except OSError:
        return False
    salt = (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    return len(head) == HEADER_LEN and salt == prev.record.salt and prev.record.last_frame >= ROLLOVER_FRAMES


ROLLOVER_TAIL = 2048
"""At most this many frames may wait to be copied under the write lock."""


def _tail_is_short(manager: BackupManager, database: str, db: Path) -> bool:
    """Whether at most ROLLOVER_TAIL frames follow the last captured one (read while the
    write lock is held, so the WAL cannot change)."""
    prev = newest_capture(manager, database)
    if prev is None or prev.record.salt is None or prev.record.checksum is None:
        return False
    rec = prev.record
    frame_len = FRAME_HEADER_LEN + rec.page_size
    try:
        with open(wal_path(db), "rb") as fh:
            head = fh.read(HEADER_LEN)
            fh.seek(HEADER_LEN + rec.last_frame * frame_len)
            tail = fh.read((ROLLOVER_TAIL + 1) * frame_len)
    except OSError:
        return False
    if len(head) < HEADER_LEN:
        return False
    try:
        scan = _core.wal_scan(head + tail, rec.last_frame + 1, rec.checksum)
    except (BackupError, ValueError):
        return False
    return scan.salt == rec.salt and len(scan.frames) + scan.uncommitted <= ROLLOVER_TAIL


def _write_lock(db: Path) -> sqlite3.Connection | None:
    """SQLite's write lock, taken without writing anything (the transaction is rolled
    back); None when a writer holds it for more than a moment (the rollover waits)."""
    conn = sqlite3.connect(db, timeout=0.5, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        conn.close()
        return None
    return conn


def _old_commit_after(db: Path, seal: Seal, scan: _core.WalCopy) -> bool:
    """Whether a committed frame of the sealed generation still lies after the sealed
    frame in the WAL file (beyond what the new generation overwrote): that generation
    grew after the seal, so its last frames were not captured."""
    frame_len = FRAME_HEADER_LEN + seal.page_size
    try:
        with open(wal_path(db), "rb") as fh:
            fh.seek(HEADER_LEN + seal.frame * frame_len)
            rest = fh.read()
    except OSError:
        return False
    salt = seal.salt[0].to_bytes(4, "big") + seal.salt[1].to_bytes(4, "big")
    if len(rest) < frame_len or rest[8:16] != salt:
        return False
    # A header carrying the old salts, so the old generation's frames can be checked.
    head = wal_header(seal.salt, seal.page_size, scan.big_endian)
    old = _core.wal_scan(head + rest, seal.frame + 1, seal.checksum)
    return old.last_commit is not None


def something_new(manager: BackupManager, database: str) -> bool:
    """Whether the WAL holds frames the last capture did not copy (cheap: the header and
    the one frame after the last captured), so a foreground capturer registers no empty
    sets. The WAL file keeps its size across restarts, so frames past the last captured
    one may be leftovers of an older generation: only a frame that continues the
    checksum chain is new."""
    db = manager.catalog.get_database(database)
    prev = newest_capture(manager, database)
    wal = wal_path(Path(db.path))
    rec = None if prev is None else prev.record
    try:
        with open(wal, "rb") as fh:
            head = fh.read(HEADER_LEN)
            if len(head) < HEADER_LEN:
                return False
            if rec is None or rec.salt is None or rec.checksum is None:
                return True
            salt = (
                int.from_bytes(head[16:20], "big"),
                int.from_bytes(head[20:24], "big"),
            )
            if salt != rec.salt:
                return True
            frame_len = FRAME_HEADER_LEN + rec.page_size
            fh.seek(HEADER_LEN + rec.last_frame * frame_len)
            frame = fh.read(frame_len)
    except FileNotFoundError:
        return False
    try:
        scan = _core.wal_scan(head + frame, rec.last_frame + 1, rec.checksum)
    except (BackupError, ValueError):
        return True  # let the step look, and report what it finds
    return bool(scan.frames) or scan.uncommitted > 0


def capture_set_ids(manager: BackupManager, database: str) -> list[str]:
    """Ids of `database`'s capture sets, oldest first (for tools and tests)."""
    out = []
    for s in manager.catalog.iter_sets(database, BackupType.ARCHIVE_LOG):
        try:
            if isinstance(
                manifest.load(manager.repo.set_dir(s.id) / store.MANIFEST, set_id=s.id).wal,
                WalCapture,
            ):
                out.append(s.id)
        except CatalogError:
            continue
    return out


__all__ = [
    "CaptureStep",
    "Previous",
    "WalGuard",
    "capture_set_ids",
    "file_name",
    "newest_capture",
    "seal_path",
    "something_new",
]
