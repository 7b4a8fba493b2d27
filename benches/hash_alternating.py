"""MD5 and SHA-512 of one page-cached file by several builds of rustybackup and by hashlib,
one process per call, the sides alternating round by round so that a machine whose speed
drifts hits every side alike. Prints wall and process-CPU min/median per side.

    python benches/hash_alternating.py FILE ROUNDS NAME=PYTHONPATH [NAME=PYTHONPATH ...]

Each NAME=PYTHONPATH is a `python/` directory holding a built `rustybackup` (for example a
`git archive` of an older commit with its own release build); hashlib runs under the first.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

CHILD = """
import hashlib, sys, time
algorithm, path, side = sys.argv[1:4]
from rustybackup import hash_file  # imported before the clock starts, for every side

def with_hashlib():
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()

wall, cpu = time.perf_counter(), time.process_time()
digest = with_hashlib() if side == "hashlib" else hash_file(path, algorithm)
print(time.perf_counter() - wall, time.process_time() - cpu, digest)
"""


def main() -> None:
    path, rounds = sys.argv[1], int(sys.argv[2])
    builds = dict(arg.split("=", 1) for arg in sys.argv[3:])
    sides = {**{name: (pythonpath, "ours") for name, pythonpath in builds.items()}}
    sides["hashlib"] = (next(iter(builds.values())), "hashlib")
    for algorithm in ("md5", "sha512"):
        times: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        digests = set()
        for _ in range(rounds):
            for side, (pythonpath, kind) in sides.items():
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, algorithm, path, kind],
                    env={**os.environ, "PYTHONPATH": pythonpath},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                times[side].append((float(out[0]), float(out[1])))
                digests.add(out[2])
        assert len(digests) == 1, f"the sides disagree: {digests}"
        for side, runs in times.items():
            wall = [w for w, _ in runs]
            cpu = [c for _, c in runs]
            print(
                f"{algorithm} {side:12s} wall min {min(wall):.2f} median {statistics.median(wall):.2f} s | "
                f"CPU min {min(cpu):.2f} median {statistics.median(cpu):.2f} s"
            )


if __name__ == "__main__":
    main()
