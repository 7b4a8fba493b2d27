"""Not reading what has not changed (issue 17): restic's rule. A file of a tree whose size,
mtime, ctime, inode and device all equal its entry in the parent set is taken over
unread: its blocks are the parent's (a reference run in the new block map) and its
digest the parent's. ctime is what catches a rewrite that put the mtime back (``touch
-r``, ``rsync -t``): the kernel sets it on every change and no call can set it back.

Identical blocks across files and sets are the Rust pass's (rust/src/dedup/)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .manifest import FileEntry


def unchanged_since(
    files: Sequence[tuple[str, Path, os.stat_result]], parent_files: Iterable[FileEntry]
) -> dict[int, FileEntry]:
    """Positions in `files` (a walk's regular files) of those unchanged since their entry
    in `parent_files`, with that entry. An entry without an identity (format 1, or a file
    that changed while the parent read it) never matches."""
    by_path = {f.path: f for f in parent_files if f.ctime_ns is not None}
    out: dict[int, FileEntry] = {}
    for i, (rel, _, st) in enumerate(files):
        e = by_path.get(rel)
        if (
            e is not None
            and e.size == st.st_size
            and e.mtime_ns == st.st_mtime_ns
            and e.ctime_ns == st.st_ctime_ns
            and e.ino == st.st_ino
            and e.dev == st.st_dev
        ):
            out[i] = e
    return out
