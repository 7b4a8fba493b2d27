"""A/B: PostgreSQL full backups in process, the resumable pass committing (fsyncing the
piece, its index and the journal) every 64 MiB of source (the default) against every
1 GiB and never, in interleaved rounds after a warm-up; wall of the engine's pass
("copy") and of the whole backup. Run as root (the backups run as the cluster's user):

    SCALE=30 ROUNDS=3 python3 benches/pg_checkpoint_ab.py
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_support import Cluster, as_user, give, rb, require_postgresql, workdir  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
from rustybackup import BackupManager, BackupType
m = BackupManager(Path(sys.argv[1]))
every = sys.argv[2]
m.checkpoint_every = None if every == "none" else int(every)
spent = {}
real = m._read
def timed(*a, **k):
    t0 = time.perf_counter()
    try:
        return real(*a, **k)
    finally:
        spent["copy"] = time.perf_counter() - t0
m._read = timed
t0 = time.perf_counter()
m.backup("ab", BackupType.FULL)
spent["total"] = time.perf_counter() - t0
print(json.dumps(spent))
"""
scale = int(os.environ.get("SCALE", "30"))
bin = require_postgresql()  # noqa: A001
base = workdir("rb-pg-ckab-")
repo = base / "repo"
(base / "pycache").mkdir()
give(base / "pycache")
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
cmd = f"{Path(sysconfig.get_path('scripts')) / 'rustybackup'} --repo {repo} archive-push ab %p"
c = Cluster.init(
    bin, base, checksums=True, conf={"archive_mode": "on", "archive_command": f"'{cmd}'", "max_wal_size": "1GB"}
)
try:
    rb(repo, "init")
    rb(repo, "db", "add", "ab", "--kind", "postgresql", "--pgdata", str(c.data), "--dsn", c.dsn)
    c.start()
    c.run(
        str(bin / "pgbench"),
        "-i",
        "-q",
        "-s",
        str(scale),
        "-h",
        str(c.sockdir),
        "-p",
        str(c.port),
        "-U",
        "postgres",
        "postgres",
    )
    c.query("CHECKPOINT")
    c.switch_and_wait_archived(timeout=3600)
    res = {}
    variants = ["67108864", "1073741824", "none"]
    for r in range(int(os.environ.get("ROUNDS", "3")) + 1):
        for v in variants:
            p = subprocess.run(
                [*as_user(), sys.executable, "-c", CHILD, str(repo), v], capture_output=True, text=True, cwd="/"
            )
            assert p.returncode == 0, p.stderr
            d = json.loads(p.stdout.strip().splitlines()[-1])
            print(("warm-up " if r == 0 else "") + v, d, os.getloadavg()[0], flush=True)
            if r:
                res.setdefault(v, []).append(d)
    for v, ds in res.items():
        for k in ("copy", "total"):
            xs = [d[k] for d in ds]
            print(v, k, f"min {min(xs):.2f} median {statistics.median(xs):.2f}")
finally:
    c.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)
