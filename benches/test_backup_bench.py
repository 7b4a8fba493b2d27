"""Backup and restore, ours next to borg and restic on the same page-cached tree.

Tree: RB_BENCH_FILES files of RB_BENCH_FILE_MIB MiB of random bytes (default 4 x 2 MiB;
the issue's figure is 64 x 16 MiB). Groups: full backup; second backup after
overwriting 1% of the 8 KiB blocks scattered over all files; restore of a FULL plus 5
INCREMENTALs (the peers restore their 6th snapshot). Stored bytes go to extra_info.
RB_BENCH_ROUNDS sets the rounds per tool (default 3 at 64 MiB and more, else 2).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bench_data import one_percent_toucher, random_tree
from peers import run_quiet, tool
from rustybackup import BackupManager

FILES = int(os.environ.get("RB_BENCH_FILES", "4"))
FILE_MIB = int(os.environ.get("RB_BENCH_FILE_MIB", "2"))
BLOCK = 8192


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_tree(tmp_path_factory.mktemp("bench") / "src", FILES, FILE_MIB)


_touch_one_percent = one_percent_toucher(FILE_MIB, BLOCK)


class Peer:
    """One tool's init/backup/restore commands."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.repo = base / f"{name}-repo"
        self.count = 0
        self.manager: BackupManager | None = None
        self.exe = "" if name == "rustybackup" else tool(name)

    def init(self, src: Path) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        self.count = 0
        if self.name == "rustybackup":
            self.manager = BackupManager(self.repo)
            self.manager.register_database("bench", src)
        elif self.name == "borg":
            run_quiet(self.exe, "init", "-e", "none", str(self.repo))
        else:
            run_quiet(self.exe, "init", "--repo", str(self.repo))
        # Flush the previous round's repository deletion and writes now, outside the timing.
        os.sync()

    def backup(self, src: Path, kind: str) -> None:
        self.count += 1
        if self.manager is not None:
            self.manager.backup("bench", kind)
        elif self.name == "borg":
            run_quiet(self.exe, "create", f"{self.repo}::s{self.count}", ".", "--files-cache=disabled")
        else:
            run_quiet(self.exe, "backup", "--repo", str(self.repo), "--force", str(src))

    def restore(self, target: Path) -> None:
        shutil.rmtree(target, ignore_errors=True)
        if self.manager is not None:
            self.manager.restore("bench", target)
        elif self.name == "borg":
            target.mkdir()
            run_quiet(self.exe, "extract", f"{self.repo}::s{self.count}", cwd=target)
        else:
            run_quiet(self.exe, "restore", "latest", "--repo", str(self.repo), "--target", str(target))


PEERS = ["rustybackup", "borg", "restic"]


ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "3" if FILES * FILE_MIB >= 64 else "2"))


def _pedantic(benchmark: Any, target: Callable[[], None], setup: Callable[[], None]) -> None:
    # One untimed warm-up round per tool: on this VM the first gigabyte written after a
    # pause is slow for whoever writes it (1.6 s rounds became 4.9 s), not for a tool.
    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="full backup")
def test_full_backup(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    p = Peer(peer, tmp_path)
    os.chdir(tree)  # borg stores paths relative to the working directory
    _pedantic(benchmark, lambda: p.backup(tree, "full"), lambda: p.init(tree))
    benchmark.extra_info["stored_bytes"] = _du(p.repo)
    benchmark.extra_info["tree_bytes"] = _du(tree)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="incremental after 1% of blocks changed")
def test_incremental_one_percent(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    p = Peer(peer, tmp_path)
    os.chdir(tree)
    stored: list[int] = []

    def setup() -> None:
        p.init(tree)
        p.backup(tree, "full")
        _touch_one_percent(tree)
        stored.append(_du(p.repo))

    def run() -> None:
        p.backup(tree, "incremental")
        stored[-1] = _du(p.repo) - stored[-1]

    _pedantic(benchmark, run, setup)
    benchmark.extra_info["incremental_stored_bytes"] = stored[-1]
    benchmark.extra_info["stored_percent_of_tree"] = round(100 * stored[-1] / _du(tree), 2)


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="restore FULL + 5 INCREMENTAL")
def test_restore_full_plus_five(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    p = Peer(peer, tmp_path)
    os.chdir(tree)
    p.init(tree)
    p.backup(tree, "full")
    for _ in range(5):
        _touch_one_percent(tree)
        p.backup(tree, "incremental")
    target = tmp_path / "restored"
    _pedantic(benchmark, lambda: p.restore(target), lambda: shutil.rmtree(target, ignore_errors=True))
    restored = target if peer != "restic" else target / tree.relative_to(tree.anchor)
    assert sorted(f.name for f in restored.iterdir()) == sorted(f.name for f in tree.iterdir())
    assert all((restored / f.name).read_bytes() == f.read_bytes() for f in tree.iterdir())
