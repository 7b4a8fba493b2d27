"""One file out of a large files set, each tool a new process, interleaved (issue 17):
``rustybackup restore --include`` and ``rustybackup dump`` beside ``restic restore
--include``, ``restic dump`` and ``borg extract PATH``, with ``cat FILE > OUT`` as the
floor (a process that reads and writes the one file). Each tool backs the tree up once
(untimed); every round each side restores the file into a new place, one after the
other, the order turning each round; one warm-up round, not counted. Prints wall and
CPU (user + system of the process) min and median, and the load average.

Our CLI runs with bytecode, as a wheel installed by pip has it: this sandbox sets
PYTHONDONTWRITEBYTECODE, which makes every ``python3 -m rustybackup`` compile its ~70
modules from source again (0.4-0.5 s of CPU per process, more than the restore). The
``rustybackup-src`` side keeps that setting, to show what it costs.

  RB_TREE_FILES=1024 RB_BENCH_ROUNDS=5 python3 -m pytest -q -p no:cacheprovider \\
    benches/test_tree_restore_one_bench.py -s
"""

from __future__ import annotations

import os
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
from peers import PEER_ENV
from rustybackup import BackupManager
from test_tree_restore_bench import FILES, ROUNDS, _rel, make_tree


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("onebench") / "src")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bytecode_env(cache: Path) -> dict[str, str]:
    """The bench environment with bytecode written to (and read from) `cache`."""
    env = {k: v for k, v in PEER_ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


@pytest.mark.benchmark(group="tree: one file of a large set, interleaved")
def test_one_file_interleaved(benchmark: Any, big_tree: Path, tmp_path: Path) -> None:
    disabled = bool(getattr(benchmark, "disabled", False))
    warmup, rounds = (0, 1) if disabled else (1, ROUNDS)
    one = _rel(FILES // 2)
    want = (big_tree / one).read_bytes()
    repo = tmp_path / "rb"
    m = BackupManager(repo)
    m.register_database("bench", big_tree)
    set_id = m.backup("bench", "full").id
    ours = [sys.executable, "-m", "rustybackup", "--repo", str(repo)]
    fast = bytecode_env(tmp_path / "pyc")
    sides: dict[str, Callable[[Path], tuple[list[str], dict[str, str], Path]]] = {
        "rustybackup restore": lambda t: (
            [*ours, "restore", "bench", "--to", str(t), "--include", f"/{one}"],
            fast,
            t / one,
        ),
        "rustybackup dump": lambda t: ([*ours, "dump", set_id, one], fast, t),
        "rustybackup-src restore": lambda t: (
            [*ours, "restore", "bench", "--to", str(t), "--include", f"/{one}"],
            dict(PEER_ENV),
            t / one,
        ),
        "cat (floor)": lambda t: (["cat", str(big_tree / one)], dict(PEER_ENV), t),
    }
    restic = shutil.which("restic")
    if restic is not None:
        renv = {**PEER_ENV, "RESTIC_CACHE_DIR": str(tmp_path / "restic-cache")}
        rrepo = str(tmp_path / "restic")
        subprocess.run([restic, "init", "--repo", rrepo], check=True, env=renv, capture_output=True)
        subprocess.run([restic, "backup", "--repo", rrepo, str(big_tree)], check=True, env=renv, capture_output=True)
        where = f"{big_tree}/{one}"
        sides["restic restore"] = lambda t: (
            [restic, "restore", "latest", "--repo", rrepo, "--target", str(t), "--include", where],
            renv,
            t / where.lstrip("/"),
        )
        sides["restic dump"] = lambda t: ([restic, "dump", "--repo", rrepo, "latest", where], renv, t)
    borg = shutil.which("borg")
    if borg is not None and not disabled:
        brepo = str(tmp_path / "borg")
        benv = {**PEER_ENV, "BORG_BASE_DIR": str(tmp_path / "borg-base")}
        subprocess.run([borg, "init", "-e", "none", brepo], check=True, env=benv, capture_output=True)
        subprocess.run([borg, "create", f"{brepo}::a", "."], check=True, env=benv, cwd=big_tree, capture_output=True)
        sides["borg extract"] = lambda t: ([borg, "extract", f"{brepo}::a", one], benv, t / one)
    names = list(sides)
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    landed: dict[str, Path] = {}

    def all_rounds() -> None:
        for r in range(warmup + rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                target = tmp_path / "out" / f"{name.replace(' ', '-')}-{r}"
                cmd, env, result = sides[name](target)
                to_stdout = result == target  # dump and cat write the file to stdout
                if to_stdout:
                    target.parent.mkdir(parents=True, exist_ok=True)
                elif name.startswith("borg"):
                    target.mkdir(parents=True)
                start, start_cpu = time.perf_counter(), _children_cpu()
                if to_stdout:
                    with open(target, "wb") as out:
                        subprocess.run(cmd, check=True, env=env, stdout=out, stderr=subprocess.PIPE)
                else:
                    subprocess.run(cmd, check=True, env=env, cwd=target if name.startswith("borg") else None,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
                if r >= warmup:
                    wall.setdefault(name, []).append(time.perf_counter() - start)
                    cpu.setdefault(name, []).append(_children_cpu() - start_cpu)
                landed[name] = result

    benchmark.pedantic(all_rounds, rounds=1, iterations=1, warmup_rounds=0)
    for name, got in landed.items():
        assert got.read_bytes() == want, name
    lines = [
        f"\none file of {FILES} ({one}), {rounds} interleaved rounds after {warmup} warm-up"
        f" (load {os.getloadavg()[0]:.1f})"
    ]
    for name in names:
        w, c = wall[name], cpu[name]
        lines.append(
            f"{name:24} wall min {min(w) * 1000:6.0f} median {statistics.median(w) * 1000:6.0f} ms"
            f"  CPU min {min(c) * 1000:5.0f} median {statistics.median(c) * 1000:5.0f} ms"
        )
        benchmark.extra_info[name] = {"wall_min": min(w), "wall_median": statistics.median(w), "cpu_min": min(c)}
    print("\n".join(lines))
