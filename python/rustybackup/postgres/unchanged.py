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

A file taken unread is not checked for damaged pages again either (`taken_unread`): its
pages are the bytes the parent checked, all older than the parent's start LSN (nothing
was written to it since before the parent started), so the parent's verdict, its
damaged pages included, is this set's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import dedup
from ..manifest import FileEntry
from ..sources import LStat

# As resume's TICK in rust/src/engine/resume.rs: the coarsest timestamp granularity
# assumed of the source's file system.
TICK_NS = 1_000_000_000
ALWAYS_READ = frozenset({"global/pg_control"})


def unchanged_since(
    files: Sequence[tuple[str, str | Path, LStat]],
    parent_files: Sequence[FileEntry],
    parent_started_at_us: int,
) -> dict[int, FileEntry]:
    """Positions in `files` (the data directory's walk) of those the new set takes from
    the parent (its `parent_files`, started at `parent_started_at_us`) unread, with the
    parent's entry."""
    bound = parent_started_at_us * 1000 - TICK_NS
    return {i: e for i, e in dedup.unchanged_since(files, parent_files).items() if _settled(e, bound)}


def taken_unread(files: Iterable[FileEntry], parent_files: Iterable[FileEntry], parent_started_at_us: int) -> set[str]:
    """Paths of the new set's `files` that `unchanged_since` took from the parent unread,
    decided from the entries alone: a new entry carries the stat of the walk that the
    rule compared, so the same identity and the same bound give the same answer."""
    bound = parent_started_at_us * 1000 - TICK_NS
    by_path = {e.path: e for e in parent_files if e.ctime_ns is not None}
    out = set()
    for f in files:
        e = by_path.get(f.path)
        if (
            e is not None
            and (f.size, f.mtime_ns, f.ctime_ns, f.ino, f.dev) == (e.size, e.mtime_ns, e.ctime_ns, e.ino, e.dev)
            and _settled(e, bound)
        ):
            out.add(f.path)
    return out


def _settled(e: FileEntry, bound: int) -> bool:
    """Whether the parent's entry `e` was last written before `bound` and may be taken."""
    return e.path not in ALWAYS_READ and e.mtime_ns < bound and e.ctime_ns is not None and e.ctime_ns < bound
