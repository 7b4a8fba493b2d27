"""The foreground WAL capturer (``rustybackup capture NAME``): a capture step every
``interval`` seconds while a `WalGuard` pins the WAL between steps, so every WAL
restart it sees provably continues the previous generation (capture.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .capture import WalGuard, something_new, wal_is_long
from .enums import BackupType
from .errors import ConfigError

if TYPE_CHECKING:
    from .catalog import BackupSet
    from .engine import BackupManager

log = logging.getLogger(__name__)


ROLLOVER_TRIES = 4
"""Catch-up steps tried for one rollover before the next interval."""


class Capturer:
    """Runs capture steps of one ``sqlite`` database until `stop` is set; a step in
    progress always completes (its set is registered or nothing is)."""

    def __init__(self, manager: BackupManager, database: str, interval: float = 10.0) -> None:
        db = manager.catalog.get_database(database)
        if db.kind != "sqlite":
            raise ConfigError(f"database {database!r} is a {db.kind!r} source; WAL capture is for sqlite databases")
        if not interval > 0:
            raise ConfigError(f"capture interval must be positive, got {interval!r}")
        self.manager = manager
        self.database = database
        self.path = Path(db.path)
        self.interval = float(interval)
        self.sets = 0

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
        """Steps every `interval` seconds until `stop` is set; returns the sets registered."""
        guard = WalGuard(self.path)
        self.manager.wal_guards[self.database] = guard
        try:
            while True:
                s = self.step()
                if s is not None and on_set is not None:
                    on_set(s)
                if stop.wait(self.interval):
                    break
            # A last step, so what was committed before the stop is captured.
            s = self.step()
            if s is not None and on_set is not None:
                on_set(s)
        finally:
            self.manager.wal_guards.pop(self.database, None)
            guard.close()
        return self.sets


__all__ = ["Capturer"]
