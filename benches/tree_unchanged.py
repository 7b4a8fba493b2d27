"""In process (BackupManager): a FULL then an unchanged INCREMENTAL of TREE in a fresh
repository, ROUNDS times, wall and CPU seconds of the process; then the CPU per phase of
the unchanged INCREMENTAL (phases wrapped; best of 3). Figures in benches/README.md
("The manifest's files read in Rust; unchanged backups").

    python3 benches/tree_unchanged.py TREE [ROUNDS]
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rustybackup import BackupManager, dedup, engine, fsmeta, manifest

acc: dict[str, float] = {}


def wrap(obj: Any, name: str, label: str) -> None:
    f = getattr(obj, name)

    @functools.wraps(f)
    def timed(*a: Any, **k: Any) -> Any:
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            acc[label] = acc.get(label, 0.0) + time.process_time() - t

    setattr(obj, name, timed)


def rounds(src: str, n: int, work: Path) -> None:
    for r in range(n):
        repo = work / f"repo{r}"
        m = BackupManager(repo)
        m.register_database("t", src)
        t, c = time.perf_counter(), time.process_time()
        m.backup("t", "full")
        fw, fc = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        s = m.backup("t", "incremental")
        iw, ic = time.perf_counter() - t, time.process_time() - c
        print(
            f"round {r}: FULL wall {fw:.2f} cpu {fc:.2f} | unchanged INCREMENTAL wall {iw:.2f} cpu {ic:.2f} | "
            f"second/first wall {iw / fw:.3f} | unread {m.summary(s.id).unread} | load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        shutil.rmtree(repo)


def phases(src: str, work: Path) -> None:
    wrap(engine, "walk", "walk (walk_tree, entries, a Path per file)")
    wrap(fsmeta, "capture", "owners/xattrs capture")
    wrap(manifest, "load", "parent manifest load")
    wrap(manifest, "write", "manifest write (dump, encode, validating parse, fsync)")
    wrap(engine.BackupManager, "_read", "Rust pass (backup_files) and job lists")
    wrap(engine._Pass, "entries", "new file entries")
    wrap(fsmeta.Captured, "files", "owners onto entries (fsmeta.files)")
    wrap(dedup, "match_parent", "parent match (dedup.match_parent, in Rust)")
    wrap(dedup, "tree_files", "new file rows (dedup.tree_files, in Rust)")
    m = BackupManager(work / "repo-phases")
    m.register_database("t", src)
    m.backup("t", "full")
    best: tuple[float, dict[str, float]] | None = None
    for _ in range(3):
        acc.clear()
        t = time.process_time()
        m.backup("t", "incremental")
        total = time.process_time() - t
        if best is None or total < best[0]:
            best = (total, dict(acc))
    assert best is not None
    total, split = best
    print(f"unchanged INCREMENTAL, CPU seconds: {total:.2f}")
    for label, v in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"  {v:.2f}  {label}")
    print(f"  {total - sum(split.values()):.2f}  the rest (catalog, locks, summary)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        rounds(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2, Path(d))
        phases(sys.argv[1], Path(d))
