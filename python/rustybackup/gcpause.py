"""The cyclic garbage collector paused for the length of one backup.

A backup of a file tree builds a few objects per file (walk tuples, entries, JSON rows)
that reference counting frees; none of them are cycles worth collecting. The collector
does not know that: every 700 allocations it walks the young objects, and the older
generations with them, and at 20,000 small files that was 30% of a full backup's CPU
(benches/README.md "Where the wall time of a small-file full backup goes"). Pausing it
for the backup and turning it back on after (as it was) leaves anything cyclic to the
next collection; nothing is leaked, and a process that disabled it itself keeps it off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """Runs the block with the cyclic collector off; restores its previous state."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
