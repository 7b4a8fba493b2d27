"""What an incremental base backup driven by the WAL (PostgreSQL 17's WAL summaries, issue 14)
would read, measured on a real cluster: `pgbench -i -s SCALE`, a checkpoint (the parent's
start), `pgbench -T SECONDS -c 2`, a checkpoint (the new backup's start); then PostgreSQL's
own `pg_waldump` lists every block reference of the WAL between the two, and the relation
blocks they touch are counted against the relation files' blocks. Also timed on the same
data directory, several rounds: reading every file (page cache), `_core.scan_file` (read,
8 KiB block digests and the whole-file digest: what the engine's pass does to what it
reads) and writing + fsyncing as many bytes as the WAL touched (what an incremental
stores). Run as root:

    SCALE=50 SECONDS_=60 python3 benches/pg_wal_touched.py
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg_support import Cluster, give, require_postgresql, workdir
from rustybackup import _core

SCALE = int(os.environ.get("SCALE", "20"))
SECONDS_ = int(os.environ.get("SECONDS_", "30"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
BLKREF = re.compile(r"blkref #\d+: rel (\d+)/(\d+)/(\d+)(?: fork (\w+))? blk (\d+)")
RELFILE = re.compile(r"(\d+)(?:_(vm|fsm))?(?:\.(\d+))?")
PER_SEGMENT = 131072  # 1 GiB of 8 KiB blocks


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def main() -> None:
    bin = require_postgresql()
    base = workdir("rb-pg-touched-")
    arch = base / "arch"
    arch.mkdir()
    give(arch)
    c = Cluster.init(bin, base, checksums=True)
    # 16 MiB segments, as the bench's cluster (Cluster.init makes 1 MiB ones).
    shutil.rmtree(c.data)
    c.run(str(bin / "initdb"), "-D", str(c.data), "-U", "postgres", "--auth=trust", "-k", "-N")
    c.configure(
        {
            "port": str(c.port), "listen_addresses": "''", "unix_socket_directories": f"'{c.sockdir}'",
            "archive_mode": "on", "archive_command": f"'cp %p {arch}/%f'", "max_wal_size": "1GB",
            "shared_buffers": "128MB",
        }
    )  # fmt: skip
    c.start()
    pg = ["-h", str(c.sockdir), "-p", str(c.port), "-U", "postgres", "postgres"]
    try:
        c.run(str(bin / "pgbench"), "-i", "-q", "-s", str(SCALE), *pg, timeout=3600)
        c.query("CHECKPOINT")
        ((start,),) = c.query("SELECT pg_current_wal_insert_lsn()::text")
        c.run(str(bin / "pgbench"), "-n", "-T", str(SECONDS_), "-c", "2", *pg, timeout=SECONDS_ + 600)
        c.query("CHECKPOINT")
        ((end,),) = c.query("SELECT pg_current_wal_insert_lsn()::text")
        c.switch_and_wait_archived(timeout=3600)
        t0 = time.monotonic()
        dump = subprocess.run(
            [str(bin / "pg_waldump"), "-p", str(arch), "-s", start, "-e", end],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        dumped = time.monotonic() - t0
        touched: dict[tuple[str, str, str], set[int]] = collections.defaultdict(set)
        records = 0
        for line in dump.stdout.splitlines():
            records += 1
            for m in BLKREF.finditer(line):
                touched[(m.group(2), m.group(3), m.group(4) or "main")].add(int(m.group(5)))
        blocks = hit = 0
        for p in (c.data / "base").rglob("*"):
            m = RELFILE.fullmatch(p.name)
            if m is None or not p.is_file():
                continue
            first = int(m.group(3) or 0) * PER_SEGMENT
            blocks += p.stat().st_size // 8192
            key = (p.parent.name, m.group(1), m.group(2) or "main")
            hit += sum(1 for b in touched.get(key, ()) if first <= b < first + PER_SEGMENT)
        wal = lsn(end) - lsn(start)
        print(f"scale {SCALE}, pgbench -T {SECONDS_} -c 2: WAL {start}..{end} {wal / 1e6:.1f} MB, {records} records "
              f"(pg_waldump {dumped:.2f} s)")  # fmt: skip
        print(f"relation blocks under base/: {blocks} ({blocks * 8192 / 1e6:.1f} MB); touched by the WAL: {hit} "
              f"({hit * 8192 / 1e6:.1f} MB, {100 * hit / max(blocks, 1):.1f}%)")  # fmt: skip
        most = sorted(((len(v), k) for k, v in touched.items()), reverse=True)[:4]
        print("most touched (blocks, (db, relfilenode, fork)):", most)
        files = [p for p in c.data.rglob("*") if p.is_file() and "pg_wal" not in p.parts]
        total = sum(p.stat().st_size for p in files)
        for n in range(ROUNDS):
            t0 = time.monotonic()
            for p in files:
                with open(p, "rb") as fh:
                    while fh.read(4 << 20):
                        pass
            t1 = time.monotonic()
            for p in files:
                _core.scan_file(p, algorithm="blake3", block_size=8192)
            t2 = time.monotonic()
            blob = os.urandom(1 << 20)
            with open(base / "written", "wb") as fh:
                for _ in range(hit * 8192 >> 20):
                    fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            t3 = time.monotonic()
            (base / "written").unlink()
            print(f"round {n + 1}: {total / 1e6:.0f} MB read {t1 - t0:.2f} s, scan_file {t2 - t1:.2f} s; "
                  f"{hit * 8192 / 1e6:.0f} MB written + fsync {t3 - t2:.2f} s; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    finally:
        c.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
