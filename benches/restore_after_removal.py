"""Why the restore benches keep their outputs until the last round: on this machine's
ext4 a tree created right after another tree was removed costs far more CPU, whoever
creates it (perf: `recently_deleted` / `find_inode_bit` in the inode allocator, which
skips inodes freed in the last minutes). In process: a FULL of TREE, then ROUNDS restores
of it, each into a fresh directory, the first ones kept, the later ones each right after
removing the previous output; wall and CPU seconds of each. Start it when nothing has
removed a large tree for several minutes, or the first restores pay too.

    python3 benches/restore_after_removal.py TREE [ROUNDS]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rustybackup import BackupManager


def main(tree: str, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        m = BackupManager(work / "repo")
        m.register_database("t", tree)
        m.backup("t", "full")
        previous: Path | None = None
        for r in range(2 * rounds):
            removing = r >= rounds
            if removing and previous is not None:
                shutil.rmtree(previous)
            os.sync()
            out = work / f"out{r}"
            t, c = time.perf_counter(), time.process_time()
            m.restore("t", out)
            how = "right after removing the previous output" if removing else "no removal before it"
            print(
                f"restore {r}: wall {time.perf_counter() - t:.2f} s, CPU {time.process_time() - c:.2f} s "
                f"({how}; load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            previous = out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2)
