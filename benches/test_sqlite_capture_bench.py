"""A writer's throughput on a live SQLite database with ``rustybackup capture`` running
beside it (a separate process, as deployed) against without, in interleaved rounds.

The goal (issue 14): within 10%. Commits per second of a writer that inserts one ~200
byte row per transaction as fast as it can, with ``PRAGMA synchronous`` =
RB_BENCH_SYNCHRONOUS (SQLite's default FULL: an fsync per commit; NORMAL: none, the
writer is then CPU-bound and writes ~4 KiB of WAL per commit, tens of MB/s); the
capturer steps every RB_BENCH_INTERVAL seconds. Printed, not asserted: a bench.

    RB_BENCH_SECONDS=5 RB_BENCH_ROUNDS=4 RB_BENCH_INTERVAL=1 RB_BENCH_SYNCHRONOUS=FULL \\
        python -m pytest benches/test_sqlite_capture_bench.py -s -p no:cacheprovider

RB_BENCH_SIDES adds "nosync": the same capturer with the spool's fsync before each
rollover taken out (what the durability costs the writer; never a mode of the product).
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

SECONDS = float(os.environ.get("RB_BENCH_SECONDS", "1"))
ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "1"))  # counted rounds, after one warm-up (CI smoke: 1 x 1 s)
INTERVAL = os.environ.get("RB_BENCH_INTERVAL", "1")
SYNCHRONOUS = os.environ.get("RB_BENCH_SYNCHRONOUS", "FULL").upper()
SIDES = tuple(os.environ.get("RB_BENCH_SIDES", "without,with,floor").split(","))
assert set(SIDES) <= {"without", "with", "nosync", "floor"}
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


# The capturer with Spool.sync a no-op: only for telling the fsync's cost apart.
_NOSYNC = (
    "import runpy, sys; import rustybackup.capture_spool as s; s.Spool.sync = lambda self: None; "
    "sys.argv = ['rustybackup', *sys.argv[1:]]; runpy.run_module('rustybackup', run_name='__main__')"
)


def _capturer(repo: Path, sync: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            *(("-m", "rustybackup") if sync else ("-c", _NOSYNC)),
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
    # Its first step registers a set at once: from then on it is the capturer as deployed
    # (running for days), not its start-up, that the writer's round measures.
    assert proc.stdout.readline().startswith("captured into set")
    return proc


# The floor under any capture of this WAL (Litestream's shadow WAL is this): a process
# that pins the WAL as the capturer does (a read transaction handed over to a fresh one
# every interval, then a PASSIVE checkpoint) and appends the WAL's new bytes to a file
# with one fsync per interval. No parsing, no checksums, no set, no catalog.
_FLOOR = r"""
import os, signal, sqlite3, sys, time
db, out, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def pin():
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    c.execute("BEGIN"); c.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return c
held = pin()
done = 0
with open(db + "-wal", "rb") as wal, open(out, "ab") as dest:
    print("floor running", flush=True)
    head = b""
    while True:
        wal.seek(0)
        now = wal.read(32)
        if now != head:  # restarted: the new generation is written from the start
            head, done = now, 0
        wal.seek(done)
        while chunk := wal.read(1 << 24):
            dest.write(chunk)
            done += len(chunk)
        dest.flush()
        os.fsync(dest.fileno())
        fresh = pin(); held.execute("COMMIT"); held.close(); held = fresh
        k = sqlite3.connect(db, isolation_level=None)
        k.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        k.close()
        if stop:
            break
        time.sleep(interval)
"""


def _floor(db: Path, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _FLOOR, str(db), str(out), INTERVAL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
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
    nosync: list[float] = []
    sets_before = len(manager.catalog.list_sets("bench"))
    cpu = 0.0
    captured = 0  # bytes of WAL the "with" side's capturers stored
    floor: list[float] = []
    loads: list[float] = []
    sides = SIDES
    k = len(sides)
    # Round 0 warms every side up (page cache, bytecode, the WAL file's size) and is not
    # counted.
    for r in range(ROUNDS + 1):
        # Rotate the order so a drift of the machine does not favour one side.
        for side in sides[r % k :] + sides[: r % k]:
            if side == "nosync":
                proc = _capturer(repo, sync=False)
                rate = _write_for(db, SECONDS) / SECONDS
                _stop(proc)
                if r:
                    nosync.append(rate)
            elif side == "with":
                known = {s.id for s in manager.catalog.list_sets("bench", BackupType.ARCHIVE_LOG)}
                proc = _capturer(repo)
                rate = _write_for(db, SECONDS) / SECONDS
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                _stop(proc)
                done = resource.getrusage(resource.RUSAGE_CHILDREN)
                captured += sum(
                    s.bytes_read
                    for s in manager.catalog.list_sets("bench", BackupType.ARCHIVE_LOG)
                    if s.id not in known
                )
                # Only the capturer's own CPU (the floor's processes are children too).
                cpu += (done.ru_utime - used.ru_utime) + (done.ru_stime - used.ru_stime)
                if r:
                    with_capture.append(rate)
            elif side == "floor":
                proc = _floor(db, tmp_path / "floor.wal")
                rate = _write_for(db, SECONDS) / SECONDS
                _stop(proc)
                os.truncate(tmp_path / "floor.wal", 0)
                if r:
                    floor.append(rate)
            else:
                rate = _write_for(db, SECONDS) / SECONDS
                if r:
                    without.append(rate)
            loads.append(os.getloadavg()[0])
    conn.close()
    sets = len(manager.catalog.list_sets("bench")) - sets_before
    base = statistics.median(without)

    def row(name: str, xs: list[float]) -> str:
        if not xs:
            return ""
        med = statistics.median(xs)
        return (
            f"  {name}: {' '.join(f'{x:,.0f}' for x in xs)} (min {min(xs):,.0f}, median {med:,.0f}; "
            f"median ratio {med / base:.3f}, min ratio {min(xs) / min(without):.3f})\n"
        )

    print(
        f"\nwriter commits/s (synchronous={SYNCHRONOUS}), {ROUNDS} interleaved rounds of {SECONDS:g} s, "
        f"capture every {INTERVAL} s:\n"
        + row("without capture", without)
        + row("with capture", with_capture)
        + row("capture without the spool's fsync", nosync)
        + row("floor (pin + copy + fsync)", floor)
        + f"  {sets} capture sets registered; load average {min(loads):.1f}-{max(loads):.1f}\n"
        f"  capturer processes (the 'with' side): {cpu:.2f} s CPU (user+sys) for {captured / 1e6:,.1f} MB of WAL "
        f"({1000 * cpu / max(captured / 1e6, 1e-9):,.1f} ms per MB, start-up included)"
    )
    assert sets > 0
