"""Resumable backups (issue 19): a FULL backup cut at half its bytes, then resumed, beside
the same FULL from scratch. The resumed run re-hashes the staged half of the piece (for
the trailer checksums and to check what it adopts) instead of reading, hashing and
compressing that half of the source again.

Sizes: RB_RESUME_FILES x RB_RESUME_MIB, 32 x 1 MiB by default (a smoke run); the figure in
benches/README.md is 64 x 16 MiB (1 GiB). RB_BENCH_ROUNDS sets the rounds (default 3).
Run: python3 -m pytest benches/test_resume_bench.py --benchmark-only -q
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from rustybackup import BackupManager
from rustybackup.engine import BackupProgress
from rustybackup.errors import BackupCancelled

FILES = int(os.environ.get("RB_RESUME_FILES", "32"))
MIB = int(os.environ.get("RB_RESUME_MIB", "1"))
ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "3"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("resume") / "src"
    src.mkdir()
    for i in range(FILES):
        # Half compressible, half random: zstd has work to do.
        block = os.urandom(1 << 15) + bytes(1 << 15)
        (src / f"f{i:04}").write_bytes(block * (MIB * 16))
    os.sync()
    return src


def _repo(root: Path, src: Path) -> BackupManager:
    if root.exists():
        shutil.rmtree(root)
    m = BackupManager(root)
    m.register_database("tree", src, compression="zstd")
    return m


def _cut_at_half(m: BackupManager) -> None:
    stop = threading.Event()

    def progress(p: BackupProgress) -> None:
        if p.bytes_done * 2 >= p.bytes_total:
            stop.set()

    try:
        m.backup("tree", "full", progress=progress, cancel=stop)
    except BackupCancelled:
        return
    raise AssertionError("the backup was not cut")


def test_resumed_after_a_cut_at_half(benchmark, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    state: dict[str, BackupManager] = {}

    def setup() -> None:
        state["m"] = _repo(root, tree)
        _cut_at_half(state["m"])

    def run() -> None:
        m = state["m"]
        done = m.backup("tree", "full")
        resumed = m.resumed[done.id]
        benchmark.extra_info.update(read=done.bytes_read, adopted=resumed.bytes, files=resumed.files)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS)


def test_fresh_full(benchmark, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "repo"
    state: dict[str, BackupManager] = {}

    def setup() -> None:
        state["m"] = _repo(root, tree)

    def run() -> None:
        done = state["m"].backup("tree", "full")
        benchmark.extra_info.update(read=done.bytes_read)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS)


def test_fresh_full_without_checkpoints(benchmark, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What journaling costs an uninterrupted backup (a commit, with its fsyncs, every
    64 MiB of source): `test_fresh_full` with checkpoints off."""
    root = tmp_path / "repo"
    state: dict[str, BackupManager] = {}

    def setup() -> None:
        state["m"] = _repo(root, tree)
        state["m"].checkpoint_every = None

    def run() -> None:
        state["m"].backup("tree", "full")

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS)
