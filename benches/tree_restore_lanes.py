"""The tree restore's large files one at a time against two at a time (part B2,
rust/src/engine/restore_parallel.rs), same bytes, interleaved rounds after a warm-up:
a tree of one file takes the path every large file took before (streamed alone on the
calling thread), a tree of four files of a quarter each is written in two lanes. Wall
and CPU seconds of this process, min / median.

    python benches/tree_restore_lanes.py [MiB, default 1024] [rounds, default 5]
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rustybackup import BackupManager


def tree(base: Path, name: str, files: int, mib: int, rng: random.Random) -> BackupManager:
    src = base / name
    for i in range(files):
        p = src / "base" / str(i)
        p.mkdir(parents=True, exist_ok=True)
        with open(p / "rel", "wb") as f:
            for _ in range(mib // files):
                f.write(rng.randbytes(1 << 20))
    m = BackupManager(base / f"{name}-repo")
    m.register_database("t", src)
    m.backup("t", "full")
    return m


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory(prefix="rb-lanes-") as tmp:
        base = Path(tmp)
        rng = random.Random(1)
        sides = {"one file (serial path)": tree(base, "one", 1, mib, rng)}
        sides["four files (two lanes)"] = tree(base, "four", 4, mib, rng)
        res: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in sides}
        for r in range(rounds + 1):
            order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
            for k, m in order:
                out = base / "out"
                ru = resource.getrusage(resource.RUSAGE_SELF)
                t = time.perf_counter()
                m.restore("t", out)
                w = time.perf_counter() - t
                ru2 = resource.getrusage(resource.RUSAGE_SELF)
                shutil.rmtree(out)
                if r:  # round 0 is the warm-up
                    res[k][0].append(w)
                    res[k][1].append(ru2.ru_utime - ru.ru_utime + ru2.ru_stime - ru.ru_stime)
        for k, (walls, cpus) in res.items():
            print(
                f"{k}: wall min/median {min(walls):.2f} / {statistics.median(walls):.2f} s, "
                f"cpu {min(cpus):.2f} / {statistics.median(cpus):.2f} s"
            )
        print("load average", " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
