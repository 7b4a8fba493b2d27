"""One set's restore, this build against BEFORE (a directory holding another build's
``rustybackup`` package, e.g. a copy of ``python/rustybackup`` with its ``_core`` taken
before a change), interleaved, the order turning every round, a warm-up restore per side.
Before each restore the repository leaves the page cache (as hours after a backup) and
``sync`` runs; every restored tree is kept until the last round (removing a tree slows
the next tree's creation on this VM). Printed per restore: wall seconds, user and system
CPU seconds, minor page faults; then min and median per side.

The set is the newest of database NAME in REPO, e.g. a ``files`` database of two 400 MB
files of random bytes (``head -c 400M /dev/urandom``), backed up once with this build.

    python3 benches/restore_ab.py BEFORE REPO NAME [ROUNDS]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def uncache(root: Path) -> None:
    for d, _, names in os.walk(root):
        for name in names:
            try:
                fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def restore(before: str | None, repo: Path, name: str, out: Path) -> tuple[float, float, float, int]:
    env = dict(os.environ)
    if before:
        env["PYTHONPATH"] = before
    uncache(repo)
    subprocess.run(["sync"], check=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    cmd = [sys.executable, "-m", "rustybackup", "--repo", str(repo), "restore", name, "--to", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt


def main() -> None:
    before, repo, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    sides = {"before": before, "after": None}
    walls: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(dir=repo.parent) as d:
        out = Path(d)
        for side, path in sides.items():
            restore(path, repo, name, out / f"warm-{side}")
        for r in range(rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for side in order:
                w, u, s, f = restore(sides[side], repo, name, out / f"{side}{r}")
                walls[side].append(w)
                load = os.getloadavg()[0]
                print(
                    f"round {r} {side:6} wall {w:.2f} user {u:.2f} sys {s:.2f} minflt {f} load {load:.1f}", flush=True
                )
        shutil.rmtree(out, ignore_errors=True)
    for side, ws in walls.items():
        print(f"{side}: min {min(ws):.2f} median {statistics.median(ws):.2f}")


if __name__ == "__main__":
    main()
