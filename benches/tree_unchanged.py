"""In process (BackupManager): a FULL then an unchanged INCREMENTAL of TREE in a fresh
repository, ROUNDS times, wall and CPU seconds of the process; then the CPU per phase of
the unchanged INCREMENTAL (phases wrapped; best of 3). With --cli: the same two backups
through each tool's command line (ours, restic), the tools interleaved and the order
turning every round, one warm-up round first; wall and CPU seconds (user + system of the
tool's processes), min and median. Figures in benches/README.md ("The manifest's files
read in Rust; unchanged backups" and "The parent's table kept in Rust").

    python3 benches/tree_unchanged.py TREE [ROUNDS] [--cli]
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import statistics
import subprocess
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


def _bytecode_env(env: dict[str, str], cache: Path) -> dict[str, str]:
    """Ours as a wheel installs it: pip compiles the package's bytecode at install time.
    This machine sets PYTHONDONTWRITEBYTECODE, so an editable checkout compiles every
    module it imports from source at every start (~0.15 s CPU); the cache goes to a
    prefix in the scratch directory (filled by the warm-up round), not into the tree."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(cache)
    return out


def cli(src: str, n: int, work: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from peers import PEER_ENV
    from test_tree_bench import Tool

    tools = ["rustybackup"] + (["restic"] if shutil.which("restic") else [])
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    loads: list[float] = []
    pyc = work / "pycache"

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def timed(key: tuple[str, str], counted: bool, run: Any) -> None:
        os.sync()
        start, start_cpu = time.perf_counter(), children_cpu()
        run()
        if counted:
            wall.setdefault(key, []).append(time.perf_counter() - start)
            cpu.setdefault(key, []).append(children_cpu() - start_cpu)

    # The limits beside the tools: a stat walk of the tree alone (find, lstat per entry),
    # and our interpreter's start with the backup command's imports and nothing else.
    floors = {
        "find (stat walk)": (["find", src, "-printf", "%s %T@ %C@ %i\\n"], PEER_ENV),
        "python start + CLI imports": (
            [sys.executable, "-c", "import rustybackup.cli.backup_cmds"],
            _bytecode_env(PEER_ENV, pyc),
        ),
        "python start alone": ([sys.executable, "-c", "pass"], PEER_ENV),
    }
    for r in range(1 + n):
        for peer in tools[r % len(tools) :] + tools[: r % len(tools)]:
            d = work / f"{peer}-{r}"
            (d / "scratch").mkdir(parents=True)
            t = Tool(peer, d / "repo", d / "scratch")
            if peer == "rustybackup":
                t.env = _bytecode_env(t.env, pyc)
            t.init(Path(src))
            for step in ("first", "second"):
                timed((peer, step), r > 0, functools.partial(t.backup, Path(src)))
            loads.append(os.getloadavg()[0])
            shutil.rmtree(d)
        for name, (argv, env) in floors.items():
            timed(
                (name, "second"),
                r > 0,
                functools.partial(subprocess.run, argv, check=True, env=env, stdout=subprocess.DEVNULL),
            )
    print(f"CLI, {n} interleaved rounds after a warm-up, load {min(loads):.1f}-{max(loads):.1f}")
    for peer in tools:
        f, s2 = wall[(peer, "first")], wall[(peer, "second")]
        print(
            f"  {peer:12} first wall min {min(f):.2f} median {statistics.median(f):.2f} cpu min "
            f"{min(cpu[(peer, 'first')]):.2f} median {statistics.median(cpu[(peer, 'first')]):.2f} | second wall "
            f"min {min(s2):.2f} median {statistics.median(s2):.2f} cpu min {min(cpu[(peer, 'second')]):.2f} "
            f"median {statistics.median(cpu[(peer, 'second')]):.2f} | second/first min {min(s2) / min(f):.3f} "
            f"median {statistics.median(s2) / statistics.median(f):.3f}"
        )
    if "restic" in tools:
        ours, theirs = wall[("rustybackup", "second")], wall[("restic", "second")]
        print(
            f"  restic / ours, unchanged second: wall min {min(theirs) / min(ours):.2f}x median "
            f"{statistics.median(theirs) / statistics.median(ours):.2f}x, cpu min "
            f"{min(cpu[('restic', 'second')]) / min(cpu[('rustybackup', 'second')]):.2f}x"
        )
    for name in floors:
        w, c = wall[(name, "second")], cpu[(name, "second")]
        print(f"  {name:28} wall min {min(w):.3f} median {statistics.median(w):.3f} cpu min {min(c):.3f}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--cli"]
    count = int(args[1]) if len(args) > 1 else 2
    with tempfile.TemporaryDirectory() as d:
        if "--cli" in sys.argv:
            cli(args[0], count, Path(d))
        else:
            rounds(args[0], count, Path(d))
            phases(args[0], Path(d))
