"""Backup sources: walking a file tree (links are data, never followed; what cannot be
stored is listed, not fatal), and listing an archive directory. A live SQLite database
is read by sqlite_wal.py."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from pathlib import Path

from . import _core
from .errors import BackupError
from .selection import Selection

log = logging.getLogger(__name__)


# An entry's lstat as the backup reads it: the walk's `_core.Stat` (one object per entry
# instead of the about twenty of an `os.stat_result`), or a stat_result made elsewhere
# (a single file, a database snapshot, a PostgreSQL data directory's listing).
LStat = os.stat_result | _core.Stat


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of a source tree that a backup did not store, and why (recorded in the
    set's manifest summary, not only in a log line)."""

    path: str
    reason: str


@dataclass(frozen=True)
class KnownFiles:
    """The parent set's files as the walk uses them (`walk`'s `parent`): `table` its rows,
    `reread` the paths whose extended attributes are listed again whatever matched (those
    it recorded, or had a problem with). Built by `dedup.known_files`."""

    table: _core.FileTable
    reread: set[str]


@dataclass
class TreeEntries:
    """A source tree's regular files, directories and symlinks (sorted relative paths),
    and the entries it skipped."""

    # (rel, full path, lstat). The walk gives the full path as text: a `Path` per file
    # was a tenth of an unchanged backup's CPU.
    files: list[tuple[str, str | Path, LStat]] = field(default_factory=list)
    dirs: list[tuple[str, LStat]] = field(default_factory=list)
    symlinks: list[tuple[str, str, LStat]] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    # FIFOs and device nodes, recorded by fsmeta.capture (sockets stay skipped).
    specials: list[tuple[str, LStat]] = field(default_factory=list)
    # Entries the selection left out (an excluded directory counts once; it is not walked).
    excluded: int = 0
    # Extended attributes read by the walk, by path: ((name, value) sorted by name, the
    # reasons those that could not be read were left out). None: not read by the walk
    # (a single file, or entries built elsewhere); fsmeta.capture reads them then.
    xattrs: dict[str, tuple[tuple[tuple[str, bytes], ...], tuple[str, ...]]] | None = None


def walk(root: Path, selection: Selection | None = None, parent: KnownFiles | None = None) -> TreeEntries:
    """Every entry under `root` (a directory) or `root` itself (a file), with lstat
    results. Links are data: each is recorded with its text, whatever it points to
    (absolute, out of the tree, dangling), and never followed. What cannot be stored is
    listed in `skipped` with the reason, and the walk goes on: sockets, fifos and
    devices, entries that vanish while the tree is walked, and the contents of
    directories that cannot be read (the directory itself is kept). `selection`
    (selection.py) leaves entries out; an excluded directory is not descended into.
    `parent`: the parent set's files, when its unchanged ones keep its data (`KnownFiles`)."""
    out = TreeEntries()
    try:
        st = root.stat()
    except OSError as exc:
        raise BackupError(f"cannot read source {root}: {exc.strerror or exc}") from exc
    if stat.S_ISREG(st.st_mode):
        out.files.append((root.name, root, st))
        return out
    if not stat.S_ISDIR(st.st_mode):
        raise BackupError(f"source {root} is neither a regular file nor a directory")
    matcher = None if selection is None else selection.matcher()
    # One pass in Rust (rust/src/tree/): listing, lstat, link texts and extended
    # attributes without a Python object per system call.
    try:
        entries, skipped, out.excluded = _core.walk_tree(
            root,
            matcher,
            exclude_caches=selection is not None and selection.exclude_caches,
            one_file_system=selection is not None and selection.one_file_system,
            known=None if parent is None else parent.table,
            reread=None if parent is None else parent.reread,
        )
    except OSError as exc:
        raise BackupError(f"cannot read source directory {root}: {exc.strerror or exc}") from exc
    vanished: set[str] = set()
    for rel, reason, gone, listing in skipped:
        if gone:
            # Deleted between listing and reading: a live tree; it is simply not in this set.
            log.info("%s %s", rel, reason)
            if listing:
                vanished.add(rel)
        else:
            log.warning("skipping %s: %s", rel, reason)
        out.skipped.append(SkippedEntry(rel, reason))
    base = os.fspath(root)
    # Concatenated, not os.path.join: this runs once per file of the tree.
    prefix = base if base.endswith("/") else base + "/"
    out.xattrs = {}
    # Bound once: this loop runs once per entry of the tree (issue 17).
    add_file, add_dir = out.files.append, out.dirs.append
    for rel, kind, est, target, xattrs, problems in entries:
        if kind == "file":
            add_file((rel, prefix + rel, est))
        elif kind == "dir":
            add_dir((rel, est))
        elif kind == "symlink" and target is not None:
            out.symlinks.append((rel, target, est))
        elif kind == "special":
            out.specials.append((rel, est))
        else:
            reason = _special_kind(est.st_mode)
            log.warning("skipping %s: %s", os.path.join(base, rel), reason)
            out.skipped.append(SkippedEntry(rel, reason))
            continue
        if xattrs or problems:
            out.xattrs[rel] = (tuple(xattrs), tuple(problems))
    if vanished:
        out.dirs = [d for d in out.dirs if d[0] not in vanished]
    # By path: the walk lists depth first ("a/b" before "a-c"). The key is a C function,
    # not a lambda called per entry.
    by_path = itemgetter(0)
    out.files.sort(key=by_path)
    out.dirs.sort(key=by_path)
    out.symlinks.sort(key=by_path)
    out.skipped.sort(key=attrgetter("path"))
    out.specials.sort(key=by_path)
    return out


def label(rel: str) -> str:
    """A printable form of a path that may hold undecodable bytes (surrogate escapes),
    for error messages and the pass's job list."""
    if rel.isascii():
        return rel  # the common name, once per file of a backup: nothing to replace
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _special_kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISCHR(mode):
        return "character device"
    return f"unsupported file type {stat.S_IFMT(mode):#o}"


def archive_candidates(archive_dir: Path) -> list[tuple[str, Path]]:
    """The regular files directly in `archive_dir`, by name (WAL/redo archives are flat)."""
    if not archive_dir.is_dir():
        raise BackupError(f"archive_dir {archive_dir} does not exist or is not a directory")
    out = []
    for entry in sorted(os.scandir(archive_dir), key=lambda e: e.name):
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
            out.append((entry.name, Path(entry.path)))
    return out
