"""The data trees the backup benches share: equal files of random bytes, and the 1%
change between a first and a second backup."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from pathlib import Path


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
