"""Test doubles for the scheduler's tests: a settable clock and a backup manager that
records its calls (the cron engine is the real one)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rustybackup.enums import BackupType
from rustybackup.errors import BackupCancelled


class FakeClock:
    """A settable, thread-safe clock; ``advance`` moves it forward."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


@dataclass
class FakeSet:
    id: str
    database: str
    backup_type: BackupType
    size: int = 1024


@dataclass
class FakeManager:
    """Records backups; ``behaviour[database]`` may raise, block or advance the clock."""

    repository: Path
    clock: Callable[[], datetime] | None = None
    calls: list[tuple[str, BackupType, datetime | None]] = field(default_factory=list)
    retention_calls: list[tuple[str, Any]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    block_until_cancel: set[str] = field(default_factory=set)
    registered: list[str] = field(default_factory=list)
    log_path: Path | None = None
    hold: threading.Event | None = None
    _n: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def backup(
        self,
        database: str,
        backup_type: BackupType,
        tags: tuple[str, ...] = (),
        progress: Any = None,
        cancel: Any = None,
    ) -> FakeSet:
        with self._lock:
            self._n += 1
            set_id = f"set-{self._n:06d}"
            self.calls.append((database, backup_type, self.clock() if self.clock else None))
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"{database} {set_id}\n")
        if self.hold is not None:
            self.hold.wait(30)
        if database in self.fail:
            raise self.fail[database]
        if database in self.block_until_cancel:
            # Cancellation is checked between blocks, as the engine does.
            while not (cancel is not None and cancel.is_set()):
                threading.Event().wait(0.01)
            raise BackupCancelled(f"backup of {database} cancelled at max_duration")
        with self._lock:
            self.registered.append(set_id)
        return FakeSet(set_id, database, backup_type)

    def apply_retention(self, database: str, policy: Any, dry_run: bool = False) -> list[str]:
        self.retention_calls.append((database, policy))
        return []
