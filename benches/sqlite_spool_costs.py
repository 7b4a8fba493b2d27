"""What the durable spool costs, measured inside the capturer rather than as the writer's
throughput (which this shared machine's load moves by more than the effect): a writer
process commits one ~200-byte row per transaction at ``SYNC`` for ``SECS`` seconds while
`Capturer` runs in this process, instrumented; rounds with the spool's fsync and without
it (`Spool.sync` a no-op) alternate, after a warm-up round of each.

Per round: the writer's commits/s and its own CPU per commit, rollovers and spool syncs
per second, the time spent in the syncs (before the write lock and under it), and how
long each rollover held SQLite's write lock (the writer cannot commit meanwhile: the
stall the rollovers impose, per second of run). Printed, not asserted.

    SYNC=NORMAL SECS=3 ROUNDS=3 python benches/sqlite_spool_costs.py /tmp/spool-costs
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rustybackup import capture_spool
from rustybackup.capture_loop import Capturer
from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType

SYNC = os.environ.get("SYNC", "NORMAL").upper()
SECS = float(os.environ.get("SECS", "3"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))

WRITER = r"""
import os, sqlite3, sys, time
db, sync, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None)
c.execute(f"PRAGMA synchronous={sync}")
p = os.urandom(200)
n = 0
t0 = time.process_time()
end = time.perf_counter() + secs
while time.perf_counter() < end:
    c.execute("INSERT INTO t (v) VALUES (?)", (p,))
    n += 1
print(n, time.process_time() - t0)
"""


class Probe:
    """Times of the spool's syncs and of the rollovers' write-lock holds."""

    def __init__(self) -> None:
        self.syncs: list[float] = []
        self.locked_syncs: list[float] = []
        self.holds: list[float] = []
        self.locked_since: float | None = None


class _TimedWriter:
    """The rollover's write-lock connection, timing BEGIN IMMEDIATE .. ROLLBACK."""

    def __init__(self, conn: sqlite3.Connection, probe: Probe) -> None:
        self.conn = conn
        self.probe = probe

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK" and self.probe.locked_since is not None:
            cur = self.conn.execute(sql, *args)
            self.probe.holds.append(time.perf_counter() - self.probe.locked_since)
            self.probe.locked_since = None
            return cur
        cur = self.conn.execute(sql, *args)
        if sql == "BEGIN IMMEDIATE":
            self.probe.locked_since = time.perf_counter()
        return cur

    def close(self) -> None:
        self.conn.close()


def _instrument(probe: Probe, durable: bool) -> None:
    sync = capture_spool.Spool.sync
    writer_conn = capture_spool.Roller._writer_conn

    def timed_sync(self: capture_spool.Spool) -> None:
        t = time.perf_counter()
        if durable:
            sync(self)
        (probe.locked_syncs if probe.locked_since is not None else probe.syncs).append(time.perf_counter() - t)

    def timed_writer(self: capture_spool.Roller) -> Any:
        return _TimedWriter(writer_conn(self), probe)

    capture_spool.Spool.sync = timed_sync  # type: ignore[method-assign]
    capture_spool.Roller._writer_conn = timed_writer  # type: ignore[method-assign]


def one_round(base: Path, durable: bool) -> dict[str, float]:
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    db = base / "bench.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("INSERT INTO t (v) VALUES (x'00')")
    manager = BackupManager(base / "repo")
    manager.register_database("bench", db, kind="sqlite")
    manager.backup("bench", BackupType.FULL)
    probe = Probe()
    saved = (capture_spool.Spool.sync, capture_spool.Roller._writer_conn)
    _instrument(probe, durable)
    stop = threading.Event()
    loop = Capturer(manager, "bench", interval=1.0)
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    try:
        thread.start()
        while not (base / "repo" / ".capture-bench.spool").is_dir():
            time.sleep(0.01)
        cpu0 = time.process_time()
        out = subprocess.run(
            [sys.executable, "-c", WRITER, str(db), SYNC, str(SECS)], capture_output=True, text=True, check=True
        ).stdout.split()
        capturer_cpu = time.process_time() - cpu0
        stop.set()
        thread.join()
    finally:
        capture_spool.Spool.sync, capture_spool.Roller._writer_conn = saved  # type: ignore[method-assign]
        conn.close()
    commits, writer_cpu = int(out[0]), float(out[1])
    return {
        "commits/s": commits / SECS,
        "writer us/commit": 1e6 * writer_cpu / max(commits, 1),
        "rollovers/s": loop.rollovers / SECS,
        "syncs/s": len(probe.syncs) / SECS,
        "sync ms (median)": 1000 * statistics.median(probe.syncs) if probe.syncs else 0.0,
        "sync ms/s": 1000 * sum(probe.syncs) / SECS,
        "tail syncs/s": len(probe.locked_syncs) / SECS,
        "tail sync ms/s": 1000 * sum(probe.locked_syncs) / SECS,
        "lock held ms (median)": 1000 * statistics.median(probe.holds) if probe.holds else 0.0,
        "lock held ms/s": 1000 * sum(probe.holds) / SECS,
        "capturer CPU s": capturer_cpu,
    }


def main() -> None:
    base = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/spool-costs")
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    loads = []
    for r in range(ROUNDS + 1):
        for durable in (True, False) if r % 2 == 0 else (False, True):
            got = one_round(base, durable)
            loads.append(os.getloadavg()[0])
            if r:
                rows[durable].append(got)
    print(
        f"synchronous={SYNC}, {ROUNDS} rounds of {SECS:g} s per side after a warm-up, load {min(loads):.1f}-{max(loads):.1f}"
    )
    for durable, name in ((True, "spool synced"), (False, "no spool sync")):
        print(f"  {name}:")
        for key in rows[durable][0]:
            vals = [x[key] for x in rows[durable]]
            print(
                f"    {key:22s} " + " ".join(f"{v:9.2f}" for v in vals) + f"   (median {statistics.median(vals):.2f})"
            )
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
