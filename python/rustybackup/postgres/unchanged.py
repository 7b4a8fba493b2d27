"""Which data-directory files an INCREMENTAL or DIFFERENTIAL base backup takes from its
parent without reading them: pgBackRest's rule for a non-delta backup (size and
timestamp), made safe against the one case a timestamp cannot see.

A file the parent copied and nobody wrote since is the same file; the new set refers
to the parent's blocks, and replaying the WAL from the new start LSN needs nothing of
it. The identity (device, inode, size, mtime, ctime) shows a write, except one in the
same timestamp tick as the write before it: ext4 stamps with a coarse clock, ext3 and
HFS+ by the second. So a file counts as unchanged only if its recorded mtime and ctime
lie more than `TICK` before the parent started: every later write (the parent's reads
all came after its start) then moves them. pgBackRest meets the same case by waiting
out the second at backup start and comparing whole seconds.

``global/pg_control`` is always read: recovery starts from the checkpoint it names
(PostgreSQL's basebackup.c and pgBackRest copy it last).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .. import dedup
from ..manifest import FileEntry

# As resume's TICK in rust/src/engine/resume.rs: the coarsest timestamp granularity
# assumed of the source's file system.
TICK_NS = 1_000_000_000
ALWAYS_READ = frozenset({"global/pg_control"})


def unchanged_since(
    files: Sequence[tuple[str, Path, os.stat_result]], parent_files: Sequence[FileEntry], parent_started_at_us: int
) -> dict[int, FileEntry]:
    """Positions in `files` (the data directory's walk) of those the new set takes from
    the parent (its `parent_files`, started at `parent_started_at_us`) unread, with the
    parent's entry."""
    bound = parent_started_at_us * 1000 - TICK_NS
    return {
        i: e
        for i, e in dedup.unchanged_since(files, parent_files).items()
        if e.path not in ALWAYS_READ and e.mtime_ns < bound and e.ctime_ns is not None and e.ctime_ns < bound
    }
