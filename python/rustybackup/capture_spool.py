"""The foreground capturer's cheap, frequent part: new WAL frames copied into a local
spool as they are committed, and WAL restarts let through many times a second, so that
the application's WAL stays below SQLite's 1000-page automatic checkpoint.

Why this is needed: the capturer pins the WAL with a read transaction so it cannot
restart before its frames are copied. A WAL that cannot restart grows past 1000 frames,
and from then on every commit of the application runs a PASSIVE checkpoint that the pin
keeps from finishing (benches/README.md, "The causes"). Registering a set (piece,
manifest, catalog) takes far too long to do every 50 ms; copying the few frames written
since the last tick does not. The expensive part, one ARCHIVE_LOG set per interval, then
runs off the spool without holding any lock of the database (capture.py, `CaptureStep`
with a spool).

SQLite's rules (wal.c) that make this exact:

- A writer restarts the WAL (new salts, frames from 1 again) only when, as its
  transaction starts, a checkpoint has copied every frame into the database file
  (nBackfill == mxFrame) and no reader holds a read mark on the WAL (read locks 1..N).
- A checkpoint copies frames only up to the oldest read mark in use, and copies nothing
  at all while a reader holds read lock 0 (which a reader takes when the WAL was wholly
  backfilled as it began: it reads the database file only).

So the pin (`WalGuard`) is always one of two kinds. A pin with a read mark blocks every
restart. A pin on read lock 0 is only ever taken by `Roller.roll_over` while it holds
SQLite's write lock, after it copied the WAL to its end, a checkpoint backfilled all of
it and the spool was fsynced: every frame a restart may overwrite is durable in the
spool, and no later frame can be
backfilled (so the WAL cannot restart a second time) until the next tick copied it and
moved the pin. A restart seen by the spool (other salts in the header) therefore starts
the next generation of the same chain, never a gap.

What is where, when: a commit is in the database (SQLite's promise) and, once a tick
copied it, in the spool: one file of frames per generation (a WAL header, then the
frames) and beside it a `.times` file (the segment's description, then one line per
commit with the time it was seen). Both are written, not synced, every tick; a rollover
fdatasyncs them (and the directory once a file was created) before its checkpoint lets
the WAL restart, so the WAL never overwrites frames that are not durable in the spool.
A commit is in the repository once the set of its interval is registered. A capturer
killed in between loses nothing it copied: the next step (capture.CaptureStep, under the
capture lock) recovers the spool (capture_recover.py: frame checksums and the time lines
checked, a torn tail cut and logged with its file and offset, segments already in a set
dropped) and registers it before it reads the WAL again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import _core
from .errors import BackupError
from .sqlite_wal import WalCapture, wal_path
from .store import fsync_dir
from .timestamps import to_us

if TYPE_CHECKING:
    from datetime import datetime

    from .capture import WalGuard

log = logging.getLogger(__name__)

Pair = tuple[int, int]

ROLLOVER_FRAMES = 800
"""The WAL generation's length at which a tick lets the WAL restart: well below SQLite's
automatic checkpoint at 1000 pages, so the application's commits never try checkpoints
that a pin keeps from finishing, and a tail copied under the write lock stays short."""

TICK = 0.01
"""Seconds between the spool's copies of new frames (a commit's seen time is the end of
the copy that found it: the point-in-time granularity)."""

WRITE_LOCK_WAIT = 0.05
"""How long a rollover waits for SQLite's write lock before trying again next tick."""


def file_name(generation: int, first: int, last: int) -> str:
    return f"wal-{generation:06d}-{first:010d}-{last:010d}"


TIMES = ".times"
"""Suffix of a spool file's companion: its segment's description, then its commits."""


def times_path(path: Path) -> Path:
    return path.with_name(path.name + TIMES)


@dataclass
class Segment:
    """Frames `first_frame..last_frame` of one WAL generation in a spool file (a WAL
    header, then the frames), with the time each commit was seen. The first segment of
    a generation after another names the frame it `follows`."""

    path: Path
    generation: int
    salt: Pair
    page_size: int
    first_frame: int
    seed: Pair
    last_frame: int
    checksum: Pair
    commits: list[tuple[int, int]] = field(default_factory=list)
    follows: tuple[int, int, int] | None = None
    note: str = ""

    def record(self) -> WalCapture:
        return WalCapture(
            generation=self.generation,
            salt=self.salt,
            page_size=self.page_size,
            first_frame=self.first_frame,
            last_frame=self.last_frame,
            seed=self.seed,
            checksum=self.checksum,
            commits=tuple(self.commits),
            continuous=True,
            note=self.note,
            file=file_name(self.generation, self.first_frame, self.last_frame),
            follows=self.follows,
        )

    def describe(self) -> bytes:
        """The first line of the `.times` file: what the frame file itself cannot say
        (the frames' file holds the header, so salts and page size are checked there)."""
        doc = {
            "generation": self.generation,
            "salt": list(self.salt),
            "page_size": self.page_size,
            "first_frame": self.first_frame,
            "seed": list(self.seed),
            "follows": None if self.follows is None else list(self.follows),
            "note": self.note,
        }
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def commit_lines(commits: list[tuple[int, int]]) -> bytes:
    return "".join(f"{frame} {seen}\n" for frame, seen in commits).encode()


@dataclass(frozen=True)
class Tip:
    """The last frame the spool holds (or the last registered set holds, at the start)."""

    generation: int
    salt: Pair
    frame: int
    checksum: Pair


def spool_dir(repository: Path, database: str) -> Path:
    return repository / f".capture-{database}.spool"


class Spool:
    """New committed frames of one database's WAL, copied by `pull` into one file per
    generation (per generation and interval: `cut` closes the files a set takes)."""

    def __init__(
        self,
        directory: Path,
        db: Path | None,
        tip: Tip,
        clock: Callable[[], datetime],
        recovered: list[Segment] | None = None,
    ) -> None:
        """`db` None: a spool recovered from a capturer that stopped (`recovered` holds its
        segments), which only hands them out, never reads a WAL."""
        self.dir = directory
        self.wal = None if db is None else wal_path(db)
        self.tip = tip
        self.clock = clock
        if not directory.is_dir():
            directory.mkdir(parents=True)
            fsync_dir(directory.parent)
        self._pending: list[Segment] = list(recovered or [])
        self._open: Segment | None = None
        self._times: int | None = None  # the open segment's `.times`, appended to
        self._n = max((int(p.name) for p in directory.iterdir() if p.name.isdigit()), default=0)
        self._lock = threading.Lock()
        # Written since the last `sync`: files to fdatasync, and whether one was created.
        self._dirty: set[Path] = set()
        self._new_entry = False
        self.frames_copied = 0
        self.syncs = 0

    def pull(self) -> int:
        """Copies the frames committed since the last pull; returns how many."""
        with self._lock:
            return self._pull()

    def _pull(self) -> int:
        if self.wal is None:
            return 0
        tip = self.tip
        resume = (tip.salt, tip.frame, tip.checksum)
        try:
            if self._open is not None:
                got = _core.wal_copy(self.wal, self._open.path, resume, append=True)
                if got is None or (got.resumed and not got.commits):
                    return 0
                if got.resumed:
                    return self._extend(self._open, got)
                self._close_times()
            self._n += 1
            path = self.dir / f"{self._n:08d}"
            got = _core.wal_copy(self.wal, path, resume)
        except OSError as exc:
            raise BackupError(f"cannot copy the WAL {self.wal} into the spool: {exc.strerror or exc}") from exc
        if got is None or not got.commits:
            return 0  # no WAL, or a new generation with nothing committed yet
        if got.resumed:
            seg = Segment(path, tip.generation, got.salt, got.page_size, got.first_frame, tip.checksum, 0, tip.checksum)
        else:
            old = f"{tip.salt[0]:08x}{tip.salt[1]:08x}"
            new = f"{got.salt[0]:08x}{got.salt[1]:08x}"
            seg = Segment(
                path,
                tip.generation + 1,
                got.salt,
                got.page_size,
                1,
                got.header_checksum,
                0,
                got.header_checksum,
                follows=(tip.salt[0], tip.salt[1], tip.frame),
                note=f"WAL restarted (salts {old} -> {new}) while the capturer pinned it: every frame of "
                f"generation {tip.generation} was copied first",
            )
        self._pending.append(seg)
        self._open = seg
        self._times = self._create_times(seg)
        return self._extend(seg, got)

    def _create_times(self, seg: Segment) -> int:
        path = times_path(seg.path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            os.write(fd, seg.describe())
        except OSError as exc:
            raise BackupError(f"cannot write the spool file {path}: {exc.strerror or exc}") from exc
        self._new_entry = True
        self._dirty.update((seg.path, path))
        return fd

    def _close_times(self) -> None:
        if self._times is not None:
            os.close(self._times)
            self._times = None

    def _extend(self, seg: Segment, got: _core.WalCopy) -> int:
        # A frame failing its checksum at the end of the run is, in a live WAL, most
        # often one being written as the copy read it: the next tick reads it again.
        # (A damaged frame is never copied: nothing after it is, and the set step says so.)
        # Read after the copy: a restore to T never holds a commit made after T.
        seen = to_us(self.clock())
        new = [(frame, seen) for frame in got.commits]
        # After the frames: a time line never names a frame the spool does not hold.
        if self._times is not None:
            try:
                os.write(self._times, commit_lines(new))
            except OSError as exc:
                raise BackupError(f"cannot write the spool file {times_path(seg.path)}: {exc.strerror or exc}") from exc
        self._dirty.add(seg.path)
        seg.commits.extend(new)
        last = got.commits[-1]
        seg.last_frame, seg.checksum = last, got.checksum
        self.tip = Tip(seg.generation, got.salt, last, got.checksum)
        n = last - got.first_frame + 1
        self.frames_copied += n
        return n

    def sync(self) -> None:
        """Makes every frame and commit time copied so far durable (before a rollover
        lets the WAL overwrite them): fdatasync of the files written since the last
        sync, and of the directory when a file was created."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            try:
                for path in sorted(dirty):
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except FileNotFoundError:
                        continue  # registered and discarded since: durable in its set
                    try:
                        os.fdatasync(fd)
                    finally:
                        os.close(fd)
                if self._new_entry:
                    fsync_dir(self.dir)
                    self._new_entry = False
            except OSError as exc:
                self._dirty |= dirty  # not durable: the next sync tries them again
                raise BackupError(f"cannot sync the spool {self.dir}: {exc.strerror or exc}") from exc
            self.syncs += 1

    @property
    def has_pending(self) -> bool:
        """Whether frames wait for a set."""
        with self._lock:
            return bool(self._pending)

    def cut(self) -> list[Segment]:
        """The segments not yet registered, closed: later frames go to new files. Pulls
        first, so a set holds every commit that returned before its step began."""
        with self._lock:
            self._pull()
            self._close_times()
            segs, self._pending, self._open = self._pending, [], None
            return segs

    def put_back(self, segs: list[Segment]) -> None:
        """Segments whose set was not registered: the next `cut` hands them out again."""
        with self._lock:
            self._pending[:0] = segs

    @staticmethod
    def discard(segs: list[Segment]) -> None:
        """Removes segments a registered set holds (a file that comes back after a crash
        is recognised as registered and dropped by the recovery)."""
        for s in segs:
            s.path.unlink(missing_ok=True)
            times_path(s.path).unlink(missing_ok=True)

    def close(self) -> None:
        """Removes the spool when every segment was registered; otherwise it stays for
        the next step to recover (a registration failed, or the run was interrupted)."""
        with self._lock:
            self._close_times()
            if self._pending:
                log.warning(
                    "%s: %d spooled segments were not registered; the next capture step registers them",
                    self.dir,
                    len(self._pending),
                )
                return
        shutil.rmtree(self.dir, ignore_errors=True)


class Roller:
    """Ticks: copy new frames into the spool; when the WAL generation is long, let it
    restart (see the module's docstring for why each step is safe)."""

    def __init__(self, spool: Spool, guard: WalGuard, db: Path, rollover_frames: int = ROLLOVER_FRAMES) -> None:
        self.spool = spool
        self.guard = guard
        self.db = db
        self.rollover_frames = rollover_frames
        self.rollovers = 0
        self.failed_rollovers = 0
        self._rolled: Tip | None = None  # the spool's tip at the last rollover
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="capture-spool-sync")
        self._writer: sqlite3.Connection | None = None
        self._ckpt: sqlite3.Connection | None = None

    def tick(self) -> None:
        self.spool.pull()
        # Once per generation: after a rollover the WAL restarts at the writer's next
        # transaction, and until the spool has copied a frame of the new generation
        # (or more of this one: a reader kept it from restarting) rolling over again
        # would only take the write lock and checkpoint for nothing.
        tip = self.spool.tip
        if tip.frame >= self.rollover_frames and tip != self._rolled:
            if self.roll_over():
                self._rolled = self.spool.tip

    def roll_over(self) -> bool:
        """Lets the WAL restart at the writer's next transaction; False when the write
        lock was not to be had at once (the next tick tries again)."""
        # Outside the write lock, the slow part: the pin moves to a snapshot taken after
        # the copy (its read mark still blocks every restart), and a checkpoint copies
        # into the database file every frame up to it, fsyncs included.
        self.guard.move()
        self._checkpoint()
        # What the WAL may overwrite once it restarts must be durable in the spool first:
        # the bulk synced here, while the application writes on.
        self.spool.sync()
        writer = self._writer_conn()
        try:
            writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            self.failed_rollovers += 1
            return False
        try:
            # No commit can happen now: copy the short tail, so the spool holds the whole
            # WAL, and make it durable on another thread meanwhile. The pin moves to a
            # snapshot of the whole WAL: its read mark lets the checkpoint backfill every
            # frame yet still blocks a restart, so the fsyncs (the tail's, the
            # checkpoint's) run side by side and the write lock is held for the longer
            # of them, not their sum.
            syncing = self._syncer.submit(self.spool.sync) if self.spool.pull() else None
            self.guard.move()
            busy, frames, done = self._checkpoint()
            if syncing is not None:
                syncing.result()  # raises: the pin keeps its read mark, no restart
            # Read lock 0 now that everything was backfilled (the restart may happen),
            # a read mark otherwise (another reader held the checkpoint back).
            self.guard.move()
        finally:
            writer.execute("ROLLBACK")
        if busy or frames != done:
            self.failed_rollovers += 1
            return False
        self.rollovers += 1
        return True

    def _checkpoint(self) -> tuple[int, int, int]:
        """`PRAGMA wal_checkpoint(PASSIVE)` on a connection kept for it: (busy, log, done)."""
        if self._ckpt is None:
            self._ckpt = sqlite3.connect(self.db, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            row = self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            raise BackupError(f"checkpoint of sqlite database {self.db} failed: {exc}") from exc
        return int(row[0]), int(row[1]), int(row[2])

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            # Its own connection, kept: it takes SQLite's write lock and writes nothing.
            self._writer = sqlite3.connect(
                self.db, timeout=WRITE_LOCK_WAIT, isolation_level=None, check_same_thread=False
            )
        return self._writer

    def run(self, stop: threading.Event, tick: float = TICK) -> None:
        """Ticks until `stop` is set; an error is logged and the next tick tries again
        (the pin stays, so nothing is lost while it fails)."""
        while not stop.wait(tick):
            try:
                self.tick()
            except (BackupError, sqlite3.Error) as exc:
                log.warning("%s: spool tick failed: %s", self.db, exc)

    def close(self) -> None:
        self._syncer.shutdown()
        for conn in (self._writer, self._ckpt):
            if conn is not None:
                conn.close()
        self._writer = self._ckpt = None


__all__ = ["ROLLOVER_FRAMES", "TICK", "Roller", "Segment", "Spool", "Tip", "file_name", "spool_dir", "times_path"]
