"""Not reading what has not changed (issue 17): restic's rule. A file of a tree whose size,
mtime, ctime, inode and device all equal its entry in the parent set is taken over
unread: its blocks are the parent's (a reference run in the new block map) and its
digest the parent's. ctime is what catches a rewrite that put the mtime back (``touch
-r``, ``rsync -t``): the kernel sets it on every change and no call can set it back.
Mode and owner are always taken from the walk, whatever matched; so are xattrs, except
that the walk does not list them again for an unchanged file whose parent entry has
none (`known_files`): setting or removing one, an ACL included, changes the ctime.

A parent read through the Rust reader keeps its files as a `manifest.FileTable`; the
match then runs in Rust (`FileTable.match_walk`, rust/src/format/file_table.rs) and the
new set's entries are written there too (`tree_files`), so an unchanged file never
becomes a Python object. `unchanged_since` is the same rule over parsed entries (a
manifest the Rust reader does not split, PostgreSQL's stricter rule).

Identical blocks across files and sets are the Rust pass's (rust/src/dedup/)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from . import _core
from .fsmeta import Captured
from .manifest import FileEntry, FileTable, Manifest
from .sources import KnownFiles, LStat

Walked = Sequence[tuple[str, str | Path, LStat]]
# A file taken over unread, as `_core.backup_files` takes it: (position in the walk's
# files, size, digest, mtime_ns, ctime_ns, ino, dev), the identity the walk saw.
Reuse = tuple[int, int, str, int, int, int, int]


def reuse_of(i: int, e: FileEntry) -> Reuse:
    """`Reuse` of walk file `i` matched with parent entry `e`: an entry matches only with
    an identity, equal to the walk's."""
    assert e.ctime_ns is not None and e.ino is not None and e.dev is not None
    return (i, e.size, e.digest, e.mtime_ns, e.ctime_ns, e.ino, e.dev)


def unchanged_since(files: Walked, parent_files: Iterable[FileEntry]) -> dict[int, FileEntry]:
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


def known_files(parent: Manifest) -> KnownFiles | None:
    """The parent's files for the walk of the next backup: its Rust rows, and as
    `reread` the entries the Rust reader did not take as plain rows (xattrs, holes, an
    odd identity) and every path its summary lists as skipped (an xattr it could not
    read is reported again). None when its files were parsed in Python."""
    files = parent.files
    if not isinstance(files, FileTable):
        return None
    reread = {e.path for e in files.extras.values()}
    reread.update(e.path for e in parent.summary.skipped)
    return KnownFiles(files.rows, reread)


def match_parent(
    files: list[tuple[str, str | Path, LStat]], parent_files: Sequence[FileEntry], *, reuse: bool
) -> tuple[list[tuple[int, int] | None], list[Reuse]]:
    """The parent's block range `(first_block, block_count)` of each walk file, by
    position in `files` (None: not in the parent), and, when `reuse`, the `Reuse` of
    those unchanged since, in order, with the parent's size and digest: the pass's
    `reuse` list as it is (no dict by path or by position in between, issue 17)."""
    if isinstance(parent_files, FileTable):
        return parent_files.rows.match_walk(files, reuse)
    by_path = {f.path: (f.first_block, f.block_count) for f in parent_files}
    ranges = [by_path.get(rel) for rel, _, _ in files]
    if not reuse:
        return ranges, []
    return ranges, [reuse_of(i, e) for i, e in sorted(unchanged_since(files, parent_files).items())]


def tree_files(
    read: list[tuple[str, str | Path, LStat]],
    results: list[tuple[int, str, int, int]],
    changed: Iterable[str],
    captured: Captured,
) -> FileTable | None:
    """A file tree's new entries as a `FileTable` written in Rust from the walk (`read`,
    each file's stat and owner) and the pass's `(size, digest, first_block, block_count)`
    of each; a file that changed while read gets no identity (the next backup reads it).
    Only files with xattrs or holes become `FileEntry` objects. None when a path is not
    valid UTF-8: the caller builds the entries in Python then."""
    users: dict[int, str | None] = {}
    groups: dict[int, str | None] = {}
    for o in captured.owners.values():
        users[o.uid], groups[o.gid] = o.user, o.group
    rows = _core.FileTable.from_pass(read, results, set(changed), users, groups)
    if rows is None:
        return None
    table = FileTable(rows)
    xattrs, holes = captured.xattrs, captured.holes
    if not xattrs and not holes:
        return table
    at = [i for i, (rel, _, _) in enumerate(read) if rel in xattrs or rel in holes]
    return FileTable(rows, dict(zip(at, captured.files([table[i] for i in at]), strict=True)))
