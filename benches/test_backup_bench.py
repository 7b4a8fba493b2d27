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
from pathlib import Path
from typing import Any

import pytest
from bench_data import BLOCK, FILE_MIB, FILES, one_percent_toucher, pedantic, random_tree
from peers import Peer


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_tree(tmp_path_factory.mktemp("bench") / "src", FILES, FILE_MIB)


_touch_one_percent = one_percent_toucher(FILE_MIB, BLOCK)

PEERS = ["rustybackup", "borg", "restic"]


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="full backup")
def test_full_backup(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    p = Peer(peer, tmp_path)
    os.chdir(tree)  # borg stores paths relative to the working directory
    pedantic(benchmark, lambda: p.backup(tree, "full"), lambda: p.init(tree))
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

    pedantic(benchmark, run, setup)
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
    pedantic(benchmark, lambda: p.restore(target), lambda: shutil.rmtree(target, ignore_errors=True))
    restored = target if peer != "restic" else target / tree.relative_to(tree.anchor)
    assert sorted(f.name for f in restored.iterdir()) == sorted(f.name for f in tree.iterdir())
    assert all((restored / f.name).read_bytes() == f.read_bytes() for f in tree.iterdir())
