"""Restore of many small files, interleaved and alone (issue 17: "a restore ... at least 2x
restic"): each tool backs the small-file tree up once (untimed), then every round each
tool restores it into a new directory, one tool after the other, the order turning each
round, beside ``tar x`` of the same tree as the floor (what creating the inodes and writing
the bytes costs the kernel here). One warm-up round first, not counted. Prints wall min and
median, CPU seconds (user + system of the tool's process) min and median, and the load.

Nothing is deleted until the end of the run: without a journal ext4 scans past recently
deleted inodes when it creates one (benches/README.md, "Restore in one Rust pass").
Our CLI runs with bytecode, as a wheel installed by pip has it (this sandbox sets
PYTHONDONTWRITEBYTECODE: test_tree_restore_one_bench.bytecode_env).

  RB_TREE_SMALL_FILES=20000 RB_BENCH_ROUNDS=5 python3 -m pytest -q -p no:cacheprovider \\
    benches/test_tree_restore_small_bench.py -s
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_tree_bench import SMALL_FILES, Tool, small_files
from test_tree_restore_one_bench import bytecode_env

ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "3"))


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_files(tmp_path_factory.mktemp("small") / "src")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@pytest.mark.benchmark(group="tree: small-file restore, interleaved")
def test_small_restore_interleaved(benchmark: Any, small_tree: Path, tmp_path: Path) -> None:
    disabled = bool(getattr(benchmark, "disabled", False))
    # The smoke run (timings disabled) keeps one peer: it checks the bench, not the figures.
    tools = ["rustybackup"] + [p for p in ("restic", "borg")[: 1 if disabled else 2] if shutil.which(p)]
    warmup, rounds = (0, 1) if disabled else (1, ROUNDS)
    prepared: dict[str, Tool] = {}
    for name in tools:
        (tmp_path / name / "scratch").mkdir(parents=True)
        t = Tool(name, tmp_path / name / "repo", tmp_path / name / "scratch")
        if name == "rustybackup":
            t.env = {
                **bytecode_env(tmp_path / "pyc"),
                **{k: v for k, v in t.env.items() if k in ("RESTIC_CACHE_DIR", "BORG_BASE_DIR")},
            }
        t.init(small_tree)
        t.backup(small_tree)
        prepared[name] = t
    tarball = tmp_path / "tree.tar"
    subprocess.run(["tar", "cf", str(tarball), "-C", str(small_tree), "."], check=True)
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    landed: dict[str, Path] = {}

    def restore(name: str, target: Path) -> Callable[[], None]:
        if name == "tar":

            def untar() -> None:
                target.mkdir()
                subprocess.run(["tar", "xf", str(tarball), "-C", str(target)], check=True)
                landed[name] = target

            return untar
        return lambda: landed.__setitem__(name, prepared[name].restore(small_tree, target))

    def all_rounds() -> None:
        sides = [*tools, "tar"]
        for r in range(warmup + rounds):
            for name in sides[r % len(sides) :] + sides[: r % len(sides)]:
                run = restore(name, tmp_path / f"out-{name}-{r}")
                os.sync()
                start, start_cpu = time.perf_counter(), _children_cpu()
                run()
                if r >= warmup:
                    wall.setdefault(name, []).append(time.perf_counter() - start)
                    cpu.setdefault(name, []).append(_children_cpu() - start_cpu)

    benchmark.pedantic(all_rounds, rounds=1, iterations=1, warmup_rounds=0)
    some = sorted(small_tree.rglob("f*"))[:: max(1, SMALL_FILES // 50)]
    for name, where in landed.items():
        for p in some:
            assert (where / p.relative_to(small_tree)).read_bytes() == p.read_bytes(), name
    lines = [
        f"\n{SMALL_FILES} small files, restore, {rounds} interleaved rounds after {warmup} warm-up"
        f" (load {os.getloadavg()[0]:.1f})"
    ]
    for name in [*tools, "tar"]:
        w, c = wall[name], cpu[name]
        lines.append(
            f"{name:12} wall min {min(w):.2f} median {statistics.median(w):.2f}"
            f"  CPU min {min(c):.2f} median {statistics.median(c):.2f}"
        )
        benchmark.extra_info[name] = {"wall_min": min(w), "wall_median": statistics.median(w), "cpu_min": min(c)}
    if "restic" in wall:
        lines.append(
            f"restic/ours: wall min {min(wall['restic']) / min(wall['rustybackup']):.2f}x"
            f" median {statistics.median(wall['restic']) / statistics.median(wall['rustybackup']):.2f}x"
            f"  CPU min {min(cpu['restic']) / min(cpu['rustybackup']):.2f}x"
        )
    print("\n".join(lines))
