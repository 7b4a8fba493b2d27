"""Restore of one file from a large files set, ours next to borg and restic (issue 17).

Tree: RB_TREE_FILES files of RB_TREE_FILE_MIB MiB of random bytes in 16 directories
(default 32 x 1 MiB; the issue's figure is RB_TREE_FILES=1024, 1 GiB). Each tool backs
the tree up once (untimed); the timed step restores one 1-file selection into an empty
directory: ours through the API (``restore_files``) and through the CLI (``restore
--include``, a new Python process as the peers are new processes), restic with
``restore --include``, borg with ``extract PATH``. RB_BENCH_ROUNDS sets the rounds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from peers import PEER_ENV, run_quiet, tool
from rustybackup import BackupManager

FILES = int(os.environ.get("RB_TREE_FILES", "32"))
FILE_MIB = int(os.environ.get("RB_TREE_FILE_MIB", "1"))
ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "5"))
PEERS = ["rustybackup-api", "rustybackup-cli", "borg", "restic"]


def _rel(i: int) -> str:
    return f"d{i % 16:02d}/f{i:05d}"


def make_tree(root: Path) -> Path:
    """FILES files of FILE_MIB MiB of random bytes below `root`, in 16 directories."""
    for i in range(FILES):
        p = root / _rel(i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(FILE_MIB << 20))
    os.sync()
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("treebench") / "src")


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.benchmark(group="restore one file")
def test_restore_one_file(benchmark: Any, tree: Path, tmp_path: Path, peer: str) -> None:
    repo = tmp_path / "repo"
    one = _rel(FILES // 2)
    target = tmp_path / "out"
    if peer.startswith("rustybackup"):
        m = BackupManager(repo)
        m.register_database("bench", tree)
        set_id = m.backup("bench", "full").id
        if peer == "rustybackup-api":

            def run() -> None:
                m.restore_files(set_id, [f"/{one}"], target)

        else:
            cmd = [sys.executable, "-m", "rustybackup", "--repo", str(repo), "restore", "bench", "--to", str(target)]

            def run() -> None:
                subprocess.run([*cmd, "--include", f"/{one}"], check=True, capture_output=True)

        restored = target / one
    elif peer == "borg":
        exe = tool("borg")
        run_quiet(exe, "init", "-e", "none", str(repo))
        run_quiet(exe, "create", f"{repo}::a", ".", cwd=tree)

        def run() -> None:
            target.mkdir()
            run_quiet(exe, "extract", f"{repo}::a", one, cwd=target)

        restored = target / one
    else:
        exe = tool("restic")
        env = {**PEER_ENV, "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
        subprocess.run([exe, "init", "--repo", str(repo)], check=True, env=env, capture_output=True)
        subprocess.run([exe, "backup", "--repo", str(repo), str(tree)], check=True, env=env, capture_output=True)
        where = f"{tree}/{one}"

        def run() -> None:
            subprocess.run(
                [exe, "restore", "latest", "--repo", str(repo), "--target", str(target), "--include", where],
                check=True,
                env=env,
                capture_output=True,
            )

        restored = target / where.lstrip("/")
    os.sync()
    benchmark.pedantic(
        run, setup=lambda: shutil.rmtree(target, ignore_errors=True), rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    assert restored.read_bytes() == (tree / one).read_bytes()
    benchmark.extra_info["tree_bytes"] = FILES * (FILE_MIB << 20)
