"""The data trees the backup benches share: equal files of random bytes, and the 1%
change between a first and a second backup; the sizes and rounds they run with."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

# RB_BENCH_FILES files of RB_BENCH_FILE_MIB MiB (the issues' figure is 64 x 16 MiB),
# changed in BLOCK-byte blocks; RB_BENCH_ROUNDS timed rounds per tool.
FILES = int(os.environ.get("RB_BENCH_FILES", "4"))
FILE_MIB = int(os.environ.get("RB_BENCH_FILE_MIB", "2"))
BLOCK = 8192
ROUNDS = int(os.environ.get("RB_BENCH_ROUNDS", "3" if FILES * FILE_MIB >= 64 else "2"))


def random_tree(root: Path, files: int, file_mib: int) -> Path:
    """`files` files of `file_mib` MiB of random bytes in the new directory `root`."""
    root.mkdir()
    for i in range(files):
        (root / f"file{i:03d}").write_bytes(os.urandom(file_mib << 20))
    os.sync()  # the tree's own writeback must not land in the first tool's timing
    return root


def one_percent_toucher(file_mib: int, block: int) -> Callable[[Path], None]:
    """A function that overwrites 1% of the `block`-byte blocks of a `random_tree`,
    scattered over all files, with fresh bytes: a new seed every call (re-applying an
    old seed would change nothing for the next tool on this shared tree)."""
    seeds = itertools.count(1)

    def touch(root: Path) -> None:
        rng = random.Random(next(seeds))
        files = sorted(root.iterdir())
        per_file = (file_mib << 20) // block
        total = len(files) * per_file
        for n in rng.sample(range(total), max(1, total // 100)):
            with open(files[n // per_file], "r+b") as fh:
                fh.seek((n % per_file) * block)
                fh.write(rng.randbytes(block))

    return touch


def pedantic(benchmark: Any, target: Callable[[], None], setup: Callable[[], None]) -> None:
    """ROUNDS timed rounds of `target`, each after an untimed `setup`."""
    # One untimed warm-up round per tool: on this VM the first gigabyte written after a
    # pause is slow for whoever writes it (1.6 s rounds became 4.9 s), not for a tool.
    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
