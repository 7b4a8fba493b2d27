"""A scheduler node process for tests/test_nodes_procs.py and the nodes bench:
``python node_child.py CONFIG.json``.

The clock is a file the test driver rewrites (an ISO instant), shared by every node, so a
week passes in minutes; the driver then notifies (nodes_support.CLOCK_CHANNEL) and the
node wakes. After each tick at a new instant the node records that instant (``seen_clock``
in its node row, with a notice), which is how the driver knows every live node has
handled it. The process may start before its config exists (the driver's spare for the
next restart): it loads everything, then waits for the file. Two managers:

- ``fake``: `backup` inserts one row into ``fake_runs`` in a transaction that first runs
  the registration fence (catalog_db.REGISTRATION_FENCE), as catalog.register_set does;
  a run under a lost claim inserts nothing.
- ``real``: a BackupManager on the shared catalog; with ``gate`` set, each backup first
  touches ``gate + '.started'`` and waits (real time) for ``gate`` to exist, so the test
  can stop the node mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from nodes_support import CLOCK_CHANNEL
from rustybackup import BackupManager, BackupScheduler
from rustybackup.catalog_db import REGISTRATION_FENCE
from rustybackup.catalog_pg import open_repository
from rustybackup.enums import BackupType


class FileClock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        while True:
            try:
                return datetime.fromisoformat(self.path.read_text())
            except (OSError, ValueError):  # between the driver's write and rename
                time.sleep(0.001)


@dataclass
class FakeResult:
    id: str
    bytes_read: int = 0
    size: int = 0


class FakeManager:
    """What the scheduler needs from a manager, with a fenced insert for a backup."""

    def __init__(self, url: str, repo: Path) -> None:
        self.repository = repo
        self.catalog_url = url
        self._conn, _ = open_repository(url, repo)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS fake_runs (id TEXT PRIMARY KEY, database TEXT NOT NULL, node TEXT NOT NULL)"
        )
        self.node = ""
        # The takeover bench: this node's backups never end (it is killed during one).
        self.block = False
        # One transaction at a time on the one connection (a node may run jobs at once).
        self._tx = threading.Lock()

    def backup(
        self,
        database: str,
        backup_type: BackupType,
        tags: tuple[str, ...] = (),
        progress: Any = None,
        cancel: Any = None,
    ) -> FakeResult:
        while self.block:
            time.sleep(0.01)
        run_id = uuid.uuid4().hex
        fence = REGISTRATION_FENCE.get()
        with self._tx:
            self._conn.execute("BEGIN")
            try:
                if fence is not None:
                    fence(self._conn)
                self._conn.execute(
                    "INSERT INTO fake_runs (id, database, node) VALUES (?, ?, ?)", (run_id, database, self.node)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return FakeResult(run_id)

    def apply_retention(self, database: str, policy: Any, dry_run: bool = False) -> list[str]:
        return []


class GatedManager(BackupManager):
    gate: Path | None = None

    def backup(self, database: str, backup_type: Any = BackupType.FULL, *args: Any, **kw: Any) -> Any:
        if self.gate is not None:
            Path(f"{self.gate}.started").touch()
            while not self.gate.exists():
                time.sleep(0.01)
        return super().backup(database, backup_type, *args, **kw)


def _await_config(path: Path) -> dict[str, Any]:
    """The config the driver writes when it gives this (already loaded) process a node
    name; the process ends if the driver goes first."""
    import rustybackup.claims
    import rustybackup.nodes
    import rustybackup.scheduler  # noqa: F401 - loaded before the node is named

    parent = os.getppid()
    while not path.exists():
        if os.getppid() != parent:
            sys.exit(0)
        time.sleep(0.01)
    cfg: dict[str, Any] = json.loads(path.read_text())
    if cfg.get("log"):  # from here on, this node's log
        fd = os.open(cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    return cfg


def main() -> None:
    cfg = _await_config(Path(sys.argv[1]))
    clock = FileClock(Path(cfg["clock"]))
    repo = Path(cfg["repo"])
    manager: Any
    if cfg.get("manager", "fake") == "fake":
        manager = FakeManager(cfg["url"], repo)
        manager.node = cfg["node"]
        manager.block = bool(cfg.get("block"))
    else:
        manager = GatedManager(repo, clock=clock, catalog=cfg["url"])
        manager.gate = Path(cfg["gate"]) if cfg.get("gate") else None
    sched = BackupScheduler(
        manager,
        clock=clock,
        node=cfg["node"],
        labels=cfg.get("labels", []),
        lease=timedelta(seconds=cfg["lease"]),
        heartbeat=cfg.get("heartbeat", 0.05),
        max_concurrent=cfg.get("max_concurrent", 1),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    wake = ClockWake(cfg["url"])
    Path(cfg["ready"]).touch()
    last: datetime | None = None
    while not stop.is_set():
        now = clock()
        if now != last:
            try:
                sched.execute_due_jobs()
                last = now
            except Exception as exc:  # noqa: BLE001 - the server restarting: the next loop retries
                print(f"{cfg['node']}: tick failed: {exc}", file=sys.stderr, flush=True)
                time.sleep(0.05)
        wake.wait()
    sched.close()


class ClockWake:
    """Sleeps until the driver says the clock moved (NOTIFY on nodes_support's channel),
    or 50 ms (a clock file moved without a notice: the takeover bench, a restarting
    server), so an idle node costs no CPU between steps."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None

    def wait(self) -> None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                self.conn.execute(f"LISTEN {CLOCK_CHANNEL}")
            for _ in self.conn.notifies(timeout=0.05, stop_after=1):
                pass
        except psycopg.Error:
            self.conn = None
            time.sleep(0.003)


if __name__ == "__main__":
    main()
