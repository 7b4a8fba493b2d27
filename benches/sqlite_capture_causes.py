"""What slows a SQLite writer while its WAL is captured, side by side (a script, not a
pytest bench: benches/README.md "SQLite WAL capture" quotes its output).

Sides, rotated round by round after a warm-up round: the writer alone ("none"); beside a
process that only pins the WAL as the capturer does ("pin": a read transaction handed
over to a fresh one every second, then a PASSIVE checkpoint; it copies nothing); beside
the cheapest pin that lets the WAL restart ("rollpin": every 10 ms the pin moves and a
PASSIVE checkpoint runs, and once the WAL holds 400 frames the rollover of
capture_spool.py's `Roller` runs, write lock and all, without copying a byte); beside
``rustybackup capture --interval 1`` ("capture"). Per side: commits/s, the writer's
median and 99.9th-percentile commit latency, its own CPU per commit (thread time), the
share of a core it got, and the helper process's CPU.

    SYNC=NORMAL SECS=3 ROUNDS=3 python benches/sqlite_capture_causes.py /tmp/causes
    SYNC=NORMAL SIDES=none,pin AUTOCKPT=0 python benches/sqlite_capture_causes.py /tmp/causes

``AUTOCKPT`` is the writer's ``PRAGMA wal_autocheckpoint`` (SQLite's default 1000).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rustybackup.engine import BackupManager
from rustybackup.enums import BackupType

SYNC = os.environ.get("SYNC", "NORMAL")
SECS = float(os.environ.get("SECS", "3"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SIDES = os.environ.get("SIDES", "none,pin,rollpin,capture").split(",")
AUTOCKPT = int(os.environ.get("AUTOCKPT", "1000"))

PIN = r"""
import sqlite3, sys, time
db = sys.argv[1]
def rd():
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    c.execute("BEGIN"); c.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return c
cur = rd(); print("ok", flush=True)
while True:
    time.sleep(1)
    new = rd(); cur.execute("COMMIT"); cur.close(); cur = new
    k = sqlite3.connect(db, isolation_level=None); k.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone(); k.close()
"""

ROLLPIN = r"""
import sqlite3, sys, time
db = sys.argv[1]
def rd():
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    c.execute("BEGIN"); c.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return c
def end(c):
    c.execute("COMMIT"); c.close()
k = sqlite3.connect(db, isolation_level=None)
w = sqlite3.connect(db, isolation_level=None, timeout=0.05)
cur = rd(); print("ok", flush=True)
while True:
    time.sleep(0.01)
    new = rd(); end(cur); cur = new
    busy, frames, done = k.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if frames < 400:
        continue
    try:
        w.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        continue
    end(cur)
    k.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    cur = rd()
    w.execute("ROLLBACK")
"""


def write(db: Path, seconds: float) -> tuple[float, float, float, float, float]:
    """(commits/s, median latency us, p99.9 latency ms, CPU us per commit, core share)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={SYNC}")
    conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCKPT}")
    payload = os.urandom(200)
    lat: list[float] = []
    end = time.perf_counter() + seconds
    cpu0 = time.thread_time()
    while (t := time.perf_counter()) < end:
        conn.execute("INSERT INTO t (v) VALUES (?)", (payload,))
        lat.append(time.perf_counter() - t)
    cpu = time.thread_time() - cpu0
    conn.close()
    lat.sort()
    n = len(lat)
    return n / seconds, lat[n // 2] * 1e6, lat[int(n * 0.999)] * 1e3, cpu / n * 1e6, cpu / seconds


def start(side: str, db: Path, repo: Path) -> subprocess.Popen[str] | None:
    if side == "none":
        return None
    if side in ("pin", "rollpin"):
        cmd = [sys.executable, "-c", PIN if side == "pin" else ROLLPIN, str(db)]
    else:
        cmd = [sys.executable, "-m", "rustybackup", "--repo", str(repo), "capture", "bench", "--interval", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    if side == "capture":
        # Past its start-up and first step: the capturer as it runs for days.
        proc.stdout.readline()
    return proc


def main() -> None:
    base = Path(sys.argv[1])
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    db, repo = base / "bench.db", base / "repo"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("INSERT INTO t (v) VALUES (x'00')")
    manager = BackupManager(repo)
    manager.register_database("bench", db, kind="sqlite")
    manager.backup("bench", BackupType.FULL)
    rates: dict[str, list[float]] = {s: [] for s in SIDES}
    for r in range(ROUNDS + 1):
        for side in SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]:
            proc = start(side, db, repo)
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            rate, median_us, p999_ms, cpu_us, share = write(db, SECS)
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=120)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            helper = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
            if r:
                rates[side].append(rate)
            print(
                f"round {r}{' (warm-up)' if r == 0 else ''} {side:8s} {rate:9,.0f} commits/s, latency median "
                f"{median_us:5.0f} us p99.9 {p999_ms:6.1f} ms, writer CPU {cpu_us:5.1f} us/commit, "
                f"core share {share:.2f}, helper CPU {helper:.2f} s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    conn.close()
    base_median = statistics.median(rates[SIDES[0]])
    for side, v in rates.items():
        print(
            f"{side:8s} min {min(v):9,.0f} median {statistics.median(v):9,.0f} ratio {statistics.median(v) / base_median:.2f}"
        )


if __name__ == "__main__":
    main()
