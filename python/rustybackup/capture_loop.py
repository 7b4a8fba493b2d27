"""The foreground WAL capturer (``rustybackup capture NAME``): a `WalGuard` pins the WAL
for the whole run, a `Roller` thread copies new frames into a spool every few
milliseconds and lets the WAL restart long before SQLite's automatic checkpoint would
run, and a set of the spooled frames is registered every ``interval`` seconds
(capture_spool.py). Every WAL restart it sees provably continues the previous
generation."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .capture import WalGuard, newest_capture, seal_path, something_new, wal_is_long
from .capture_spool import ROLLOVER_FRAMES, TICK, Roller, Spool, Tip, spool_dir
from .enums import BackupType
from .errors import ConfigError
from .locks import capture_lock
from .sqlite_wal import HEADER_LEN, wal_path

if TYPE_CHECKING:
    from .catalog import BackupSet
    from .engine import BackupManager

log = logging.getLogger(__name__)


ROLLOVER_TRIES = 4
"""Catch-up steps tried for one rollover before the next interval."""


class Capturer:
    """Runs capture steps of one ``sqlite`` database until `stop` is set; a step in
    progress always completes (its set is registered or nothing is)."""

    def __init__(
        self,
        manager: BackupManager,
        database: str,
        interval: float = 10.0,
        *,
        tick: float = TICK,
        rollover_frames: int = ROLLOVER_FRAMES,
    ) -> None:
        db = manager.catalog.get_database(database)
        if db.kind != "sqlite":
            raise ConfigError(f"database {database!r} is a {db.kind!r} source; WAL capture is for sqlite databases")
        if not interval > 0:
            raise ConfigError(f"capture interval must be positive, got {interval!r}")
        self.manager = manager
        self.database = database
        self.path = Path(db.path)
        self.interval = float(interval)
        if not tick > 0 or rollover_frames < 1:
            raise ConfigError(
                f"capture tick must be positive and rollover frames at least 1, got {tick!r}, {rollover_frames!r}"
            )
        self.tick = float(tick)
        self.rollover_frames = int(rollover_frames)
        self.sets = 0
        self.rollovers = 0

    def step(self) -> BackupSet | None:
        """One capture step if the WAL holds anything not yet captured. When the WAL has
        grown long, catch-up steps follow at once, each copying what came while the one
        before ran, until the tail is short enough to copy under SQLite's write lock and
        let the WAL restart (capture.py, `CaptureStep._roll_over`)."""
        if not something_new(self.manager, self.database):
            return None
        s = self._one()
        guard = self.manager.wal_guards.get(self.database)
        tries = 0
        while guard is not None and tries < ROLLOVER_TRIES and wal_is_long(self.manager, self.database):
            tries += 1
            guard.roll_over, guard.rolled_over = True, False
            try:
                s = self._one()
            finally:
                guard.roll_over = False
            if guard.rolled_over:
                break
        return s

    def _one(self) -> BackupSet:
        s = self.manager.backup(self.database, BackupType.ARCHIVE_LOG, tags=("capture",))
        self.sets += 1
        return s

    def run(self, stop: threading.Event, on_set: Callable[[BackupSet], object] | None = None) -> int:
        """Captures until `stop` is set; returns the sets registered."""
        guard = WalGuard(self.path)
        self.manager.wal_guards[self.database] = guard
        try:
            # A first step at once, even with nothing new: from its set on, the pin
            # vouches for the WAL, and the spool starts from its last frame.
            recovering = spool_dir(self.manager.repository, self.database).is_dir()
            first = self._one()
            if on_set is not None:
                on_set(first)
            if recovering and not guard.proves(first.id):
                # That step registered the spool a stopped capturer left (capture.py,
                # CaptureStep): this one reads the WAL from where that spool ended.
                first = self._one()
                if on_set is not None:
                    on_set(first)
            tip = self._proven_tip(guard)
            while tip is None:
                # No WAL yet: a plain step as soon as there is one to spool from. Not an
                # interval later: the pin on a database without WAL frames holds read
                # lock 0, which keeps every checkpoint from backfilling, so until the
                # spool runs the application's WAL grows past SQLite's 1000 pages.
                stopping = self._wait_for_wal(stop)
                s = self.step()
                if s is not None and on_set is not None:
                    on_set(s)
                if stopping:
                    return self.sets
                tip = self._proven_tip(guard)
            self._spooled(guard, tip, stop, on_set)
        finally:
            self.manager.wal_guards.pop(self.database, None)
            guard.close()
        return self.sets

    def _wait_for_wal(self, stop: threading.Event) -> bool:
        """Waits, a tick at a time, for the WAL to hold a frame or for an interval to
        pass; True when `stop` was set."""
        wal = wal_path(self.path)
        deadline = time.monotonic() + self.interval
        while not stop.wait(self.tick):
            try:
                if wal.stat().st_size > HEADER_LEN:
                    return False
            except FileNotFoundError:
                pass
            if time.monotonic() >= deadline:
                return False
        return True

    def _proven_tip(self, guard: WalGuard) -> Tip | None:
        """Where the spool starts: the last frame of the newest set, registered while the
        guard pinned the WAL (None while there is no WAL with a header)."""
        prev = newest_capture(self.manager, self.database)
        if prev is None or not guard.proves(prev.set.id):
            return None
        r = prev.record
        if r.salt is None or r.checksum is None:
            return None
        return Tip(r.generation, r.salt, r.last_frame, r.checksum)

    def _spooled(
        self,
        guard: WalGuard,
        tip: Tip,
        stop: threading.Event,
        on_set: Callable[[BackupSet], object] | None,
    ) -> None:
        repo = self.manager.repository
        # Held for the whole run: a step of another process would resume from a frame
        # this capturer's spool has already moved past.
        with capture_lock(repo, self.database):
            # The pin and the spool vouch for every restart from now on; a seal of the
            # first step would speak for a WAL the rollovers will have restarted.
            seal_path(repo, self.database).unlink(missing_ok=True)
            spool = Spool(spool_dir(repo, self.database), self.path, tip, self.manager.clock)
            roller = Roller(spool, guard, self.path, self.rollover_frames)
            guard.spool = spool
            halt = threading.Event()
            ticker = threading.Thread(target=roller.run, args=(halt, self.tick), name="capture-spool", daemon=True)
            ticker.start()
            try:
                while not stop.wait(self.interval):
                    self._register(spool, on_set)
                halt.set()
                ticker.join()
                # What was committed before the stop.
                spool.pull()
                self._register(spool, on_set)
            finally:
                halt.set()
                ticker.join()
                self.rollovers += roller.rollovers
                log.info(
                    "%s: %d WAL rollovers (%d attempts waited for a later tick), %d frames spooled, %d spool syncs",
                    self.database,
                    roller.rollovers,
                    roller.failed_rollovers,
                    spool.frames_copied,
                    spool.syncs,
                )
                roller.close()
                guard.spool = None
                spool.close()

    def _register(self, spool: Spool, on_set: Callable[[BackupSet], object] | None) -> None:
        if spool.has_pending:
            s = self._one()
            if on_set is not None:
                on_set(s)


__all__ = ["Capturer"]
