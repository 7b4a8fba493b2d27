"""File trees side by side with restic and borg (issue 17): the first and the second
(unchanged) backup of a tree of mid-sized files, the many-small-files tree (full,
unchanged second, restore), and the store growth after copying a large file inside the
tree (dedup). Every tool runs as a new process from its CLI, as a user runs it.

Sizes (defaults are a smoke run; the issue's figures in brackets):
  RB_TREE_MID_FILES x RB_TREE_MID_KIB   100 x 64 KiB      [10000 x 105 KiB, ~1 GiB]
  RB_TREE_SMALL_FILES (4.4 KiB average)  1000              [20000, ~86 MiB]
  RB_TREE_COPY_MIB                       8                 [100]
RB_BENCH_ROUNDS sets the timed rounds (default 3). benches/setup.sh installs the peers;
a missing one is a skip naming its package. RB_TREE_BEFORE=<dir> adds, to the interleaved
small-files bench, "rustybackup-before": the same CLI with <dir> first on PYTHONPATH
(another build's `rustybackup`), side by side with this one. The interleaved bench also
runs "tar", the floor of what a backup of the tree costs here: GNU tar with
--listed-incremental (the second run stores only the directory listing) into a file that
is then fsynced, and `tar x` of the full archive as the restore.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peers import PEER_ENV, tool

MID_FILES = int(os.environ.get("RB_TREE_MID_FILES", "100"))
MID_KIB = int(os.environ.get("RB_TREE_MID_KIB", "64"))
SMALL_FILES = int(os.environ.get("RB_TREE_SMALL_FILES", "1000"))
COPY_MIB = int(os.environ.get("RB_TREE_COPY_MIB", "8"))
ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "3"))
PEERS = ["rustybackup", "restic", "borg"]
BEFORE = os.environ.get("RB_TREE_BEFORE")


def _fill(root: Path, sizes: list[int], seed: int) -> Path:
    rng = random.Random(seed)
    for i, size in enumerate(sizes):
        p = root / f"d{i % 64:02d}" / f"e{(i // 64) % 16:02d}" / f"f{i:06d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))
    os.sync()
    return root


@pytest.fixture(scope="module")
def mid_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fill(tmp_path_factory.mktemp("mid") / "src", [MID_KIB << 10] * MID_FILES, 1)


def small_files(root: Path) -> Path:
    """SMALL_FILES files of 0..8.8 KiB below `root`, 4.4 KiB on average (86 MiB over
    20,000 files): the small-file tree of this bench and the small-file restore's."""
    rng = random.Random(2)
    return _fill(root, [rng.randint(0, 9011) for _ in range(SMALL_FILES)], 3)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_files(tmp_path_factory.mktemp("small") / "src")


class Tool:
    """One peer's commands on one repository."""

    def __init__(self, name: str, repo: Path, scratch: Path) -> None:
        self.name, self.repo = name, repo
        self.env = {**PEER_ENV, "RESTIC_CACHE_DIR": str(scratch / "restic-cache"), "BORG_BASE_DIR": str(scratch)}
        self.n = 0
        if name == "rustybackup-before" and BEFORE:
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in (BEFORE, self.env.get("PYTHONPATH")) if p)
            name = self.name = "rustybackup"  # the same commands, another build
        if name == "rustybackup":
            self.exe = [sys.executable, "-m", "rustybackup", "--repo", str(repo)]
        elif name == "tar":
            self.exe = ["tar"]
        else:
            self.exe = [tool(name)]

    def run(self, *args: str, cwd: Path | None = None) -> None:
        subprocess.run(
            [*self.exe, *args], check=True, env=self.env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def init(self, tree: Path) -> None:
        if self.name == "rustybackup":
            self.run("init")
            self.run("db", "add", "t", "--path", str(tree))
        elif self.name == "restic":
            self.run("init", "--repo", str(self.repo))
        elif self.name == "tar":
            self.repo.mkdir()
        else:
            self.run("init", "-e", "none", str(self.repo))

    def backup(self, tree: Path) -> None:
        self.n += 1
        if self.name == "rustybackup":
            self.run("backup", "t", "--type", "full" if self.n == 1 else "incremental")
        elif self.name == "restic":
            self.run("backup", "--repo", str(self.repo), "--host", "bench", str(tree))
        elif self.name == "tar":
            archive = self.repo / f"a{self.n}.tar"
            self.run("--listed-incremental", str(self.repo / "snar"), "-cf", str(archive), ".", cwd=tree)
            # Durable as the others' backups are (coreutils sync FILE: fsync).
            subprocess.run(["sync", str(archive), str(self.repo / "snar")], check=True)
        else:
            self.run("create", f"{self.repo}::a{self.n}", ".", cwd=tree)

    def restore(self, tree: Path, target: Path) -> Path:
        """Restores the newest backup into `target`; returns where the tree lands."""
        if self.name == "rustybackup":
            self.run("restore", "t", "--to", str(target))
            return target
        if self.name == "restic":
            self.run("restore", "latest", "--repo", str(self.repo), "--target", str(target))
            return target / str(tree).lstrip("/")
        target.mkdir()
        if self.name == "tar":
            self.run("-xf", str(self.repo / "a1.tar"), cwd=target)
            return target
        self.run("extract", f"{self.repo}::a{self.n}", cwd=target)
        return target

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.repo.rglob("*") if p.is_file())


def _timed(benchmark: Any, setup: Callable[[], None], run: Callable[[], None]) -> None:
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)


def _fresh(name: str, tmp_path: Path, tree: Path, backups: int) -> Tool:
    shutil.rmtree(tmp_path / "repo", ignore_errors=True)
    shutil.rmtree(tmp_path / "scratch", ignore_errors=True)
    (tmp_path / "scratch").mkdir()
    t = Tool(name, tmp_path / "repo", tmp_path / "scratch")
    t.init(tree)
    for _ in range(backups):
        t.backup(tree)
    return t


def _first(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    box: list[Tool] = []

    def setup() -> None:
        box[:] = [_fresh(peer, tmp_path, tree, 0)]
        os.sync()

    _timed(benchmark, setup, lambda: box[0].backup(tree))
    benchmark.extra_info["repo_bytes"] = box[0].size()


def _second(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    box = [_fresh(peer, tmp_path, tree, 1)]
    os.sync()
    # Each round is one more backup of the unchanged tree on top of the previous ones.
    _timed(benchmark, os.sync, lambda: box[0].backup(tree))


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="tree: first backup (mid-sized files)")
def test_mid_first(benchmark: Any, mid_tree: Path, tmp_path: Path, peer: str) -> None:
    _first(benchmark, mid_tree, tmp_path, peer)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="tree: unchanged second backup (mid-sized files)")
def test_mid_second(benchmark: Any, mid_tree: Path, tmp_path: Path, peer: str) -> None:
    _second(benchmark, mid_tree, tmp_path, peer)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="tree: first backup (small files)")
def test_small_first(benchmark: Any, small_tree: Path, tmp_path: Path, peer: str) -> None:
    _first(benchmark, small_tree, tmp_path, peer)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="tree: unchanged second backup (small files)")
def test_small_second(benchmark: Any, small_tree: Path, tmp_path: Path, peer: str) -> None:
    _second(benchmark, small_tree, tmp_path, peer)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="tree: restore (small files)")
def test_small_restore(benchmark: Any, small_tree: Path, tmp_path: Path, peer: str) -> None:
    t = _fresh(peer, tmp_path, small_tree, 1)
    landed: list[Path] = []
    # A fresh target each round, all removed at the end: a restore right after 20,000
    # files were removed spends most of its CPU in ext4's inode allocation skipping the
    # just-deleted inodes (perf: recently_deleted), whichever tool it is.
    targets: list[Path] = []

    def setup() -> None:
        targets.append(tmp_path / f"out-{len(targets)}")
        os.sync()

    try:
        _timed(benchmark, setup, lambda: landed.append(t.restore(small_tree, targets[-1])))
        some = sorted(small_tree.rglob("f*"))[:: max(1, SMALL_FILES // 50)]
        for p in some:
            assert (landed[-1] / p.relative_to(small_tree)).read_bytes() == p.read_bytes()
    finally:
        for d in targets:
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("peer", PEERS)
def test_store_growth_after_copying_a_large_file(tmp_path: Path, peer: str) -> None:
    """Not timed: what the backup after `cp big big-copy` adds to the store."""
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "big").write_bytes(random.Random(4).randbytes(COPY_MIB << 20))
    t = _fresh(peer, tmp_path, tree, 1)
    before = t.size()
    shutil.copyfile(tree / "big", tree / "big-copy")
    t.backup(tree)
    grown = t.size() - before
    print(f"\n{peer}: +{grown} bytes after copying a {COPY_MIB} MiB file")
    assert grown < (COPY_MIB << 20) // 10, f"{peer} stored the copy again (+{grown} bytes)"


@pytest.mark.benchmark(group="tree: small files, interleaved")
def test_small_files_interleaved(benchmark: Any, small_tree: Path, tmp_path: Path) -> None:
    """The issue's three small-file figures with the tools interleaved: each round runs
    every tool's full backup (fresh repository), its unchanged second backup and its
    restore, one tool after the other, so a load change on the shared machine hits them
    all alike; one warm-up round first (page cache, imports), not counted. Prints the
    min and median per tool and step, and the ratio restic / rustybackup."""
    tools = [p for p in PEERS if p == "rustybackup" or shutil.which(p)] + (["rustybackup-before"] if BEFORE else [])
    tools += ["tar"] if shutil.which("tar") else []
    disabled = bool(getattr(benchmark, "disabled", False))
    warmup, rounds = (0, 1) if disabled else (1, ROUNDS)
    times: dict[tuple[str, str], list[float]] = {}
    # CPU seconds of the tool's processes (user + system of the waited children): steadier
    # than wall time on the shared machine. Not memory: ru_maxrss of children misleads.
    cpu: dict[tuple[str, str], list[float]] = {}

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def one(peer: str, counted: bool, r: int) -> None:
        # A new directory each round and nothing deleted until the end: without a journal
        # ext4 scans past recently deleted inodes when it creates one, so whichever tool
        # restored right after a mass delete paid seconds for the other's cleanup.
        work = tmp_path / f"{peer}-{r}"
        work.mkdir()
        (work / "scratch").mkdir()
        t = Tool(peer, work / "repo", work / "scratch")
        t.init(small_tree)
        target = work / "out"
        landed: list[Path] = []
        steps: list[tuple[str, Callable[[], None]]] = [
            ("full", lambda: t.backup(small_tree)),
            ("second", lambda: t.backup(small_tree)),
            ("restore", lambda: landed.append(t.restore(small_tree, target))),
        ]
        for step, run in steps:
            os.sync()
            start, start_cpu = time.perf_counter(), children_cpu()
            run()
            if counted:
                times.setdefault((peer, step), []).append(time.perf_counter() - start)
                cpu.setdefault((peer, step), []).append(children_cpu() - start_cpu)
        some = sorted(small_tree.rglob("f*"))[:: max(1, SMALL_FILES // 50)]
        for p in some:
            assert (landed[-1] / p.relative_to(small_tree)).read_bytes() == p.read_bytes()

    def all_rounds() -> None:
        for r in range(warmup + rounds):
            # The order turns every round: no tool always runs right after another's cache.
            for peer in tools[r % len(tools) :] + tools[: r % len(tools)]:
                one(peer, r >= warmup, r)

    benchmark.pedantic(all_rounds, rounds=1, iterations=1, warmup_rounds=0)
    load = os.getloadavg()[0]
    lines = [
        f"\n{SMALL_FILES} small files, {rounds} interleaved rounds after {warmup} warm-up (seconds, load {load:.1f})"
    ]
    for step in ("full", "second", "restore"):
        row = {p: (min(times[(p, step)]), statistics.median(times[(p, step)])) for p in tools}
        cells = "  ".join(f"{p} min {lo:.2f} median {med:.2f}" for p, (lo, med) in row.items())
        ratio = f"  restic/ours (min) {row['restic'][0] / row['rustybackup'][0]:.2f}x" if "restic" in row else ""
        lines.append(f"{step:8} {cells}{ratio}")
        cpus = "  ".join(f"{p} {min(cpu[(p, step)]):.2f}" for p in tools)
        lines.append(f"{'':8} CPU seconds (min): {cpus}")
        benchmark.extra_info[step] = {p: {"min": lo, "median": med} for p, (lo, med) in row.items()}
    print("\n".join(lines))
