"""Restore at the end of a long chain (issue 13): peak memory of a restore of the newest
set after N INCREMENTALs of scattered change, measured as the peak RSS (`VmHWM`) of a
child process that does only that restore, with the chain's run headers and map bytes.
Version 2 keeps a bounded cursor per map of the chain (~7 KiB), so the peak should not
grow with the chain's runs; the build before kept 40 bytes per run of every map.

Tree: RB_CHAIN_FILES files of RB_CHAIN_FILE_MIB MiB, generated (one random 64-byte stamp per
8 KiB block, zeros after it: cheap to store with zstd, every block distinct). Each hour
rewrites the stamp of RB_CHAIN_CHANGE (a fraction) of the blocks, chosen at random, so
every changed block is a stretch of its own (the worst case for runs). Restores run at
each depth of RB_CHAIN_DEPTHS. RB_CHAIN_BEFORE=<dir> also runs each restore with that
directory first on PYTHONPATH (another build's `rustybackup`), side by side.

Small by default (scripts/test.sh smoke-runs every bench); benches/README.md "Long
chains" gives the command of the figures.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rustybackup import BackupManager

FILES = int(os.environ.get("RB_CHAIN_FILES", "2"))
FILE_MIB = int(os.environ.get("RB_CHAIN_FILE_MIB", "2"))
CHANGE = float(os.environ.get("RB_CHAIN_CHANGE", "0.05"))
DEPTHS = [int(x) for x in os.environ.get("RB_CHAIN_DEPTHS", "1,4").split(",")]
BEFORE = os.environ.get("RB_CHAIN_BEFORE")
# Restores per build and depth, alternating which build goes first (the first one after a
# backup meets a colder page cache); the table keeps the min time and the max peak.
ROUNDS = int(os.environ.get("RB_CHAIN_ROUNDS", "1"))
BLOCK = 8192
TRAILER_V2 = 296

# The child reports its own VmHWM: getrusage's ru_maxrss of a child also counts what the
# parent's memory was at fork, which hides the child's own peak.
CHILD = """
import sys
from rustybackup import BackupManager
m = BackupManager(sys.argv[1])
if sys.argv[3] != "-":
    m.restore("db", sys.argv[2], backup_set_id=sys.argv[3])
with open("/proc/self/status") as f:
    print(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
"""


def _stamp_file(path: Path, blocks: int, rnd: random.Random) -> None:
    zeros = bytes(BLOCK - 64)
    with open(path, "wb") as f:
        f.writelines(rnd.randbytes(64) + zeros for _ in range(blocks))


def _change(src: Path, rnd: random.Random) -> int:
    per_file = (FILE_MIB << 20) // BLOCK
    files = sorted(src.iterdir())
    picks = rnd.sample(range(len(files) * per_file), max(1, int(len(files) * per_file * CHANGE)))
    for n in sorted(picks):
        with open(files[n // per_file], "r+b") as f:
            f.seek((n % per_file) * BLOCK)
            f.write(rnd.randbytes(64))
    return len(picks)


def _runs(blockmap: Path) -> int:
    with open(blockmap, "rb") as f:
        f.seek(-TRAILER_V2, os.SEEK_END)
        t = f.read(TRAILER_V2)
    return int(struct.unpack_from("<Q", t, 16)[0]) if t[:8] == b"RBBMEND\0" else 0


def _peak_rss_kib(repo: Path, target: Path, set_id: str, pythonpath: str | None) -> tuple[int, float]:
    """(peak RSS in KiB, seconds) of a child that restores `set_id` into `target`."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(repo), str(target), set_id], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t
    assert out.returncode == 0, f"restore of {set_id} failed: {out.stderr}"
    shutil.rmtree(target, ignore_errors=True)
    return int(out.stdout.split()[-1]), elapsed


@pytest.mark.benchmark(group="format 2: long chains")
def test_restore_memory_at_the_end_of_a_long_chain(tmp_path: Path) -> None:
    rnd = random.Random(13)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(FILES):
        _stamp_file(src / f"f{i:03d}", (FILE_MIB << 20) // BLOCK, rnd)
    m = BackupManager(tmp_path / "repo")
    m.register_database("db", src, block_size=BLOCK, compression="zstd")
    repo = m.repository
    m.backup("db", "full")
    builds: list[tuple[str, str | None]] = [("this build", None)]
    if BEFORE:
        builds.append(("before", BEFORE))
    base = {name: _peak_rss_kib(repo, tmp_path / "r", "-", pp)[0] for name, pp in builds}
    rows = []
    runs = 0
    map_bytes = 0
    backup_s = 0.0
    for depth in range(1, max(DEPTHS) + 1):
        changed = _change(src, rnd)
        t = time.perf_counter()
        s = m.backup("db", "incremental")
        backup_s += time.perf_counter() - t
        bmap = repo / s.blockmap
        runs += _runs(bmap)
        map_bytes += bmap.stat().st_size
        if depth in DEPTHS:
            best: dict[str, tuple[int, float]] = {}
            for k in range(ROUNDS):
                for name, pp in builds[:: 1 if k % 2 == 0 else -1]:
                    peak, sec = _peak_rss_kib(repo, tmp_path / "r", s.id, pp)
                    was = best.get(name, (0, float("inf")))
                    best[name] = (max(was[0], peak), min(was[1], sec))
            for name, _ in builds:
                peak, sec = best[name]
                rows.append((depth, name, changed, runs, map_bytes, peak, peak - base[name], sec))
    tree = FILES * (FILE_MIB << 20)
    print(f"\ntree {tree} bytes in {FILES} files, {CHANGE:.2%} of blocks changed an hour, 8 KiB blocks")
    print(f"baseline RSS of a child that imports and opens the repository: {base} KiB")
    print(f"{max(DEPTHS)} INCREMENTALs took {backup_s:.1f} s ({backup_s / max(DEPTHS):.2f} s each)")
    print(
        "| INCREMENTALs | build | blocks changed an hour | run headers in the chain | chain's maps, bytes"
        " | peak RSS KiB | above baseline KiB | restore s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for depth, name, changed, r, mb, peak, above, sec in rows:
        print(f"| {depth} | {name} | {changed} | {r} | {mb} | {peak} | {above} | {sec:.2f} |")
