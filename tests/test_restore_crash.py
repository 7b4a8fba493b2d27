"""Crash safety: a backup process killed with SIGKILL at random moments leaves a
catalog that opens, lists only complete sets, restores each of them byte for byte,
and takes the next backup."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from rustybackup import BackupManager

CHILD = r"""
import hashlib, os, random, sys
from pathlib import Path
from rustybackup import BackupManager

repo, src, journal, seed = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
m = BackupManager(repo)
while True:
    name = src / f"f{rng.randrange(4)}"
    with open(name, "r+b") as fh:
        for _ in range(rng.randrange(1, 20)):
            fh.seek(rng.randrange(0, 2 << 20))
            fh.write(rng.randbytes(100))
    s = m.backup("db", rng.choice(["full", "incremental", "differential"]))
    digest = hashlib.sha256()
    for f in sorted(src.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    with open(journal, "a") as fh:
        fh.write(f"{s.id} {digest.hexdigest()}\n")
        fh.flush()
        os.fsync(fh.fileno())
"""


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(root.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def test_sigkill_at_random_moments_never_breaks_the_repository(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "4")))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(2 << 20))
    repo = tmp_path / "repo"
    m = BackupManager(repo)
    m.register_database("db", src)
    m.catalog.close()
    journal = tmp_path / "journal"
    restored = 0
    for trial in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(repo), str(src), str(journal), str(trial)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.3, 1.5))
        if child.poll() is not None:
            raise AssertionError(f"child exited early: {child.stderr.read() if child.stderr else ''!r}")
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stderr:
            child.stderr.close()

        m = BackupManager(repo)
        expected = dict(line.split() for line in journal.read_text().splitlines()) if journal.exists() else {}
        sets = m.catalog.list_sets()
        for s in sets:
            assert (repo / s.manifest).is_file() and all((repo / p.path).is_file() for p in s.pieces)
        # Every journalled (finished) backup is listed; a set may be listed without a
        # journal line when the kill came between the commit and the journal write.
        assert set(expected) <= {s.id for s in sets}
        for s in sets[-3:]:
            target = tmp_path / f"restore-{trial}-{s.id}"
            m.restore("db", target, backup_set_id=s.id)
            if s.id in expected:
                assert tree_digest(target) == expected[s.id]
            restored += 1
        after = m.backup("db", "incremental")
        assert after.id in {s.id for s in m.catalog.list_sets()}
        assert list((repo / "staging").iterdir()) == []
        with open(journal, "a") as fh:
            fh.write(f"{after.id} {tree_digest(src)}\n")
        m.catalog.close()
    assert restored >= 6
