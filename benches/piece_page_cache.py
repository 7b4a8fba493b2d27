"""The base backup's pass with and without the piece kept in the page cache: this build
against BEFORE (a directory holding another build's ``rustybackup`` package, e.g. a copy
of ``python/rustybackup`` with its ``_core`` taken before a change), interleaved, the order
turning every round, a warm-up pass per side, every output kept until the last round.

The source is a stopped PostgreSQL cluster of ``pgbench -i -s SCALE`` (made once under
WORK/pg with the test suite's helpers; page checksums on). Each pass is
``_core.backup_files`` as a base backup calls it: blake3, 8 KiB blocks, page checks of
every page, the resume journal; then ``sync``. Printed per pass: wall and CPU seconds,
user and system, involuntary context switches, and free memory after it.

    python3 benches/piece_page_cache.py BEFORE [ROUNDS] [SCALE] [WORK]
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cluster(work: Path, scale: int) -> Path:
    data = work / "pg" / "data"
    if (data / "PG_VERSION").exists():
        return data
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_support import Cluster, give, require_postgresql

    bin = require_postgresql()
    shutil.rmtree(work / "pg", ignore_errors=True)
    (work / "pg").mkdir(parents=True)
    give(work / "pg")
    c = Cluster.init(bin, work / "pg")
    c.start()
    try:
        pgbench = [str(bin / "pgbench"), "-i", "-s", str(scale), "-h", str(c.sockdir), "-p", str(c.port)]
        c.run(*pgbench, "-U", "postgres", "postgres", timeout=1800)
        c.query("CHECKPOINT")
    finally:
        c.stop()
    return data


def one_pass(data: Path, out: Path) -> None:
    """Runs in the child: one pass of `data` into `out`, one line of figures."""
    from rustybackup import _core
    from rustybackup.postgres.basebackup import RELATION

    out.mkdir(parents=True)
    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.is_symlink())
    rels = [str(p.relative_to(data)) for p in files]
    segments = [None if (m := RELATION.fullmatch(r)) is None else int(m.group(1) or 0) for r in rels]
    jobs = [(str(p), r, None) for p, r in zip(files, rels, strict=True)]
    os.sync()
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    _core.backup_files(
        jobs,
        out / "data.piece",
        out / "blockmap",
        None,
        algorithm="blake3",
        block_size=8192,
        checkpoint=out / "journal",
        checkpoint_every=64 << 20,
        checkpoint_rule="postgresql",
        # Every page is checked (no page is past this LSN), as in a quiet cluster's backup.
        pg_pages=(2**63 - 1, 8192, segments),
    )
    os.sync()
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    print(
        f"wall {wall:.3f} cpu {user + system:.3f} user {user:.2f} sys {system:.2f} nivcsw {r1.ru_nivcsw - r0.ru_nivcsw}"
    )


def main(before: str, rounds: int, scale: int, work: Path) -> None:
    data = cluster(work, scale)
    outs = work / "out"
    shutil.rmtree(outs, ignore_errors=True)
    sides = {"before": before, "after": str(ROOT / "python")}
    try:
        for r in range(rounds + 1):
            order = list(sides) if r % 2 else list(sides)[::-1]
            for side in order:
                env = {**os.environ, "PYTHONPATH": sides[side]}
                argv = [sys.executable, __file__, "--pass", str(data), str(outs / f"{side}{r}")]
                line = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout.strip()
                free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
                label = "warm-up" if r == 0 else f"round {r}"
                print(f"{label} {side:6} {line} free {free} MiB load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(outs, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "--pass":
        one_pass(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        args = sys.argv[1:]
        main(
            args[0],
            int(args[1]) if len(args) > 1 else 4,
            int(args[2]) if len(args) > 2 else 50,
            Path(args[3]) if len(args) > 3 else Path("/var/tmp/rb-piece-page-cache"),
        )
