"""Verification, ours next to `restic check --read-data` and `borg check --verify-data`
on the same page-cached tree, and STANDARD next to reading the repository's bytes once.

Tree: RB_BENCH_FILES files of RB_BENCH_FILE_MIB MiB of random bytes (default 4 x 2 MiB;
the issue's 1 GiB figure is RB_BENCH_FILES=64 RB_BENCH_FILE_MIB=16), backed up once
(FULL) by each tool; every round verifies the whole repository.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import pytest
from bench_data import FILE_MIB, FILES, random_tree
from peers import run_quiet, tool
from rustybackup import BackupManager, Verifier

ROUNDS = 3 if FILES * FILE_MIB >= 64 else 2


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verify-bench")
    random_tree(root / "src", FILES, FILE_MIB)
    return root


@pytest.fixture(scope="module")
def ours(base: Path) -> Verifier:
    m = BackupManager(base / "rb-repo")
    m.register_database("bench", base / "src")
    m.backup("bench", "full")
    return Verifier(m)


def _peer_repo(base: Path, name: str) -> tuple[str, Path]:
    exe = tool(name)
    repo = base / f"{name}-repo"
    if not repo.exists():
        if name == "borg":
            run_quiet(exe, "init", "-e", "none", str(repo))
            run_quiet(exe, "create", f"{repo}::s1", ".", cwd=base / "src")
        else:
            run_quiet(exe, "init", "--repo", str(repo))
            run_quiet(exe, "backup", "--repo", str(repo), str(base / "src"))
    return exe, repo


@pytest.mark.parametrize("peer", ["rustybackup", "restic", "borg"])
@pytest.mark.benchmark(group="verify: every block re-read and re-hashed")
def test_full_verify(benchmark: Any, base: Path, ours: Verifier, peer: str) -> None:
    if peer == "rustybackup":

        def run() -> None:
            assert ours.verify("bench", "full").ok

    elif peer == "restic":
        exe, repo = _peer_repo(base, "restic")

        def run() -> None:
            run_quiet(exe, "check", "--read-data", "--repo", str(repo))

    else:
        exe, repo = _peer_repo(base, "borg")

        def run() -> None:
            run_quiet(exe, "check", "--verify-data", str(repo))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["tree_bytes"] = FILES * (FILE_MIB << 20)


def _read_once(paths: list[Path]) -> int:
    """The floor STANDARD is measured against: every byte read once, nothing hashed."""
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total


def _evict(paths: list[Path]) -> None:
    """Drops the files' pages from the page cache (clean pages need no privileges), so the
    next pass reads them from storage, as a verification of a real repository does."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.mark.parametrize("cache", ["page-cached", "evicted"])
@pytest.mark.parametrize("what", ["rustybackup standard", "read bytes once"])
@pytest.mark.benchmark(group="verify: standard vs one read of the repository")
def test_standard_vs_one_read(benchmark: Any, ours: Verifier, what: str, cache: str) -> None:
    repo = Path(ours.manager.repository)
    files = sorted(p for p in (repo / "sets").rglob("*") if p.is_file())
    setup = (lambda: _evict(files)) if cache == "evicted" else None
    if what == "read bytes once":
        benchmark.pedantic(lambda: _read_once(files), setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(
            lambda: ours.verify("bench", "standard"), setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1
        )
    benchmark.extra_info["repository_bytes"] = sum(p.stat().st_size for p in files)


def _cpu() -> float:
    """CPU seconds of this process so far, every thread (the verifier's workers included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@pytest.mark.benchmark(group="verify: standard vs one read, interleaved rounds")
def test_standard_vs_one_read_interleaved(benchmark: Any, ours: Verifier) -> None:
    """Each round runs every case once, one after the other, so a change in the machine's
    load hits them all alike; the table gives min and median wall (and CPU) seconds.
    RB_BENCH_ROUNDS rounds (default 5)."""
    repo = Path(ours.manager.repository)
    files = sorted(p for p in (repo / "sets").rglob("*") if p.is_file())
    cases: dict[str, tuple[Callable[[], object], bool]] = {
        "read, page-cached": (lambda: _read_once(files), False),
        "STANDARD, page-cached": (lambda: ours.verify("bench", "standard"), False),
        "read, from storage": (lambda: _read_once(files), True),
        "STANDARD, from storage": (lambda: ours.verify("bench", "standard"), True),
        "FULL, page-cached": (lambda: ours.verify("bench", "full"), False),
    }
    rounds = int(os.environ.get("RB_BENCH_ROUNDS", "5"))
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}

    def run_rounds() -> None:
        _read_once(files)  # warm the page cache (and the verifier) once
        ours.verify("bench", "standard")
        for _ in range(rounds):
            for name, (run, evict) in cases.items():
                if evict:
                    _evict(files)
                c0, t0 = _cpu(), time.perf_counter()
                run()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(_cpu() - c0)

    benchmark.pedantic(run_rounds, rounds=1, iterations=1)
    print(f"\n{sum(p.stat().st_size for p in files)} repository bytes, {rounds} rounds, load {os.getloadavg()[0]:.1f}")
    print("| case | wall min | wall median | CPU min | CPU median |")
    print("|---|---|---|---|---|")
    for name in cases:
        w, c = wall[name], cpu[name]
        print(f"| {name} | {min(w):.3f} | {median(w):.3f} | {min(c):.3f} | {median(c):.3f} |")
        benchmark.extra_info[name] = {"wall": w, "cpu": c}
