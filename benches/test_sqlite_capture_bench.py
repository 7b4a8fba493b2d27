"""A writer's throughput on a live SQLite database with ``rustybackup capture`` running
beside it (a separate process, as deployed) against without, in interleaved rounds.

The goal (issue 14): within 10%. Commits per second of a writer that inserts one ~200
byte row per transaction as fast as it can, with ``PRAGMA synchronous`` =
RB_BENCH_SYNCHRONOUS (SQLite's default FULL: an fsync per commit; NORMAL: none, the
writer is then CPU-bound and writes ~4 KiB of WAL per commit, tens of MB/s); the
capturer steps every RB_BENCH_INTERVAL seconds. Printed, not asserted: a bench.

    RB_BENCH_SECONDS=5 RB_BENCH_ROUNDS=4 RB_BENCH_INTERVAL=1 RB_BENCH_SYNCHRONOUS=FULL \\
        python -m pytest benches/test_sqlite_capture_bench.py -s -p no:cacheprovider
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType

SECONDS = float(os.environ.get("RB_BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "2"))
INTERVAL = os.environ.get("RB_BENCH_INTERVAL", "1")
SYNCHRONOUS = os.environ.get("RB_BENCH_SYNCHRONOUS", "FULL").upper()
assert SYNCHRONOUS in ("OFF", "NORMAL", "FULL", "EXTRA")


def _write_for(db: Path, seconds: float) -> int:
    """Commits until `seconds` have passed; returns how many."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    payload = os.urandom(200)
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        conn.execute("INSERT INTO t (v) VALUES (?)", (payload,))
        n += 1
    conn.close()
    return n


def _capturer(repo: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rustybackup",
            "--repo",
            str(repo),
            "capture",
            "bench",
            "--interval",
            INTERVAL,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "capturing the WAL of ..." once it runs
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def test_writer_throughput_with_and_without_capture(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("INSERT INTO t (v) VALUES (x'00')")
    repo = tmp_path / "repo"
    manager = BackupManager(repo)
    manager.register_database("bench", db, kind="sqlite")
    manager.backup("bench", BackupType.FULL)
    without: list[float] = []
    with_capture: list[float] = []
    sets_before = len(manager.catalog.list_sets("bench"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for r in range(ROUNDS):
        # Alternate the order so a drift of the machine does not favour one side.
        for side in ("without", "with") if r % 2 == 0 else ("with", "without"):
            if side == "with":
                proc = _capturer(repo)
                rate = _write_for(db, SECONDS) / SECONDS
                _stop(proc)
                with_capture.append(rate)
            else:
                without.append(_write_for(db, SECONDS) / SECONDS)
    conn.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    new_sets = manager.catalog.list_sets("bench", BackupType.ARCHIVE_LOG)
    captured = sum(s.bytes_read for s in new_sets)
    sets = len(manager.catalog.list_sets("bench")) - sets_before
    base, with_median = statistics.median(without), statistics.median(with_capture)
    print(
        f"\nwriter commits/s (synchronous={SYNCHRONOUS}), {ROUNDS} interleaved rounds of {SECONDS:g} s, "
        f"capture every {INTERVAL} s:\n"
        f"  without capture: {' '.join(f'{x:,.0f}' for x in without)} (median {base:,.0f})\n"
        f"  with capture:    {' '.join(f'{x:,.0f}' for x in with_capture)} (median {with_median:,.0f})\n"
        f"  ratio with/without: {with_median / base:.3f}; {sets} capture sets registered\n"
        f"  capturer processes: {cpu:.2f} s CPU (user+sys) for {captured / 1e6:,.1f} MB of WAL "
        f"({1000 * cpu / max(captured / 1e6, 1e-9):,.1f} ms per MB, start-up included)"
    )
    assert sets > 0
